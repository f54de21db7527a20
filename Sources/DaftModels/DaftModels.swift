/// Module `DaftModels` (see docs/architecture.md).
public enum DaftModelsModule { public static let name = "DaftModels" }
