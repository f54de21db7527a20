/// Module `DaftCoordinator` (see docs/architecture.md).
public enum DaftCoordinatorModule { public static let name = "DaftCoordinator" }
