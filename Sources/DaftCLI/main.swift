import ArgumentParser
struct Daft: ParsableCommand { static let configuration = CommandConfiguration(commandName: "daft", abstract: "Domain-Aware Fine-Tuning trainer") }
Daft.main()
