import ArgumentParser
import Foundation
import TunaCore

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version",
        abstract: "Print tuna's release, the protocol version it speaks, and how it was built.")

    @Flag(help: "Print JSON.") var json = false

    struct Info: Codable { var tuna: String; var `protocol`: Int; var build: String }

    func run() {
        let info = Info(tuna: TunaVersion.current, protocol: ProtocolVersion.current,
                        build: TunaVersion.build(executable: WorkerCommand.executablePath()))
        if json { return printJSON(info) }
        print("tuna \(info.tuna) (protocol \(info.protocol); build: \(info.build))")
    }
}
