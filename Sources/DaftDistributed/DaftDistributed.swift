/// Module `DaftDistributed` (see docs/architecture.md).
public enum DaftDistributedModule { public static let name = "DaftDistributed" }
