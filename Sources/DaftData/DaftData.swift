/// Module `DaftData` (see docs/architecture.md).
public enum DaftDataModule { public static let name = "DaftData" }
