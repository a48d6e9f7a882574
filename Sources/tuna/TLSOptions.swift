import ArgumentParser
import Foundation
import NIOSSL
import TunaWire

/// How the CLI and the worker reach a coordinator that serves TLS.
struct ClientTLSOptions: ParsableArguments {
    @Option(help: "CA certificate (PEM) that signed the coordinator's certificate: connect in TLS (default: $TUNA_TLS_CA).")
    var tlsCA: String?
    @Option(help: "This peer's certificate (PEM), for a coordinator that requires client certificates (default: $TUNA_TLS_CERT).")
    var tlsCert: String?
    @Option(help: "The key of --tls-cert (PEM) (default: $TUNA_TLS_KEY).")
    var tlsKey: String?

    /// The TLS context, or nil for plaintext.
    func context() throws -> NIOSSLContext? {
        let env = ProcessInfo.processInfo.environment
        func given(_ flag: String?, _ name: String) -> String? { flag ?? env[name].flatMap { $0.isEmpty ? nil : $0 } }
        let cert = given(tlsCert, "TUNA_TLS_CERT"), key = given(tlsKey, "TUNA_TLS_KEY")
        guard (cert == nil) == (key == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard let ca = given(tlsCA, "TUNA_TLS_CA") else {
            if cert != nil { throw ValidationError("--tls-cert needs --tls-ca (the CA of the coordinator's certificate)") }
            return nil
        }
        do { return try TLS.Client(ca: ca, certificate: cert, key: key).context() } catch { throw Failure("\(error)") }
    }
}
