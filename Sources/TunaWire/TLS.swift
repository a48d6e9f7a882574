import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import TunaCore

/// TLS on the protocol. The coordinator serves it with a certificate and key (and, to require
/// client certificates, the CA that signs them); clients and workers check the coordinator's
/// certificate against a CA file, and its name against the address they dial (an IP address
/// against the certificate's IP entries). Files are PEM.
public enum TLS {
    public struct Server: Sendable {
        public var certificate: String
        public var key: String
        /// When set, every peer must present a certificate signed by this CA.
        public var clientCA: String?
        public init(certificate: String, key: String, clientCA: String? = nil) {
            self.certificate = certificate; self.key = key; self.clientCA = clientCA
        }

        public func context() throws -> NIOSSLContext { try TLS.context(configuration()) }

        /// The configuration `context()` makes its context from (the dashboard's HTTPS takes it).
        public func configuration() throws -> TLSConfiguration {
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try TLS.certificates(certificate, "--tls-cert").map { .certificate($0) },
                privateKey: .privateKey(try TLS.key(key, "--tls-key")))
            config.minimumTLSVersion = .tlsv12
            if let clientCA {
                config.trustRoots = .certificates(try TLS.certificates(clientCA, "--tls-client-ca"))
                config.certificateVerification = .noHostnameVerification
            }
            return config
        }
    }

    public struct Client: Sendable {
        /// The CA that signed the coordinator's certificate.
        public var ca: String
        /// This peer's own certificate and key, for a coordinator that requires them.
        public var certificate: String?
        public var key: String?
        public init(ca: String, certificate: String? = nil, key: String? = nil) {
            self.ca = ca; self.certificate = certificate; self.key = key
        }

        public func context() throws -> NIOSSLContext {
            var config = TLSConfiguration.makeClientConfiguration()
            config.minimumTLSVersion = .tlsv12
            config.trustRoots = .certificates(try TLS.certificates(ca, "--tls-ca"))
            config.certificateVerification = .fullVerification
            if let certificate, let key {
                config.certificateChain = try TLS.certificates(certificate, "--tls-cert").map { .certificate($0) }
                config.privateKey = .privateKey(try TLS.key(key, "--tls-key"))
            }
            return try TLS.context(config)
        }
    }

    static func certificates(_ path: String, _ flag: String) throws -> [NIOSSLCertificate] {
        do {
            let certs = try NIOSSLCertificate.fromPEMFile(path)
            guard !certs.isEmpty else { throw TunaError.invalid("\(flag) \(path): no certificate in it") }
            return certs
        } catch let e as TunaError { throw e } catch {
            throw TunaError.invalid("\(flag) \(path): not a readable PEM certificate (\(error))")
        }
    }

    static func key(_ path: String, _ flag: String) throws -> NIOSSLPrivateKey {
        do { return try NIOSSLPrivateKey(file: path, format: .pem) } catch {
            throw TunaError.invalid("\(flag) \(path): not a readable PEM private key (\(error))")
        }
    }

    static func context(_ config: TLSConfiguration) throws -> NIOSSLContext {
        do { return try NIOSSLContext(configuration: config) } catch {
            throw TunaError.invalid("cannot set up TLS: \(error)")
        }
    }

    /// The name to send in SNI and to check the certificate against: nil for an IP address (SNI
    /// takes none; NIOSSL then checks the certificate's IP entries against the address dialled).
    static func serverName(_ addr: HostPort) -> String? {
        addr.host.contains(":") || addr.host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : addr.host
    }

    /// A failed handshake, in words. BoringSSL says only "certificate verify failed"; why (an
    /// expired certificate, one not yet valid, another CA or another name) is found by looking at
    /// the certificate the coordinator sends, on a second connection that goes no further.
    static func explain(_ error: Error, addr: HostPort, context: NIOSSLContext) async -> String? {
        guard error is NIOSSLError || error is BoringSSLError else { return nil }
        let text = "\(error)"
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("wrong version number") {
            return "TLS: the coordinator at \(addr) did not answer in TLS (is it serving plaintext? then drop --tls-ca)"
        }
        guard text.contains("CERTIFICATE_VERIFY_FAILED") else { return "TLS handshake with the coordinator at \(addr) failed: \(text)" }
        let generic = "TLS: the coordinator's certificate is not signed by the CA given with --tls-ca, or does not name \(addr.host)"
        guard let leaf = await peerCertificate(addr, context: context) else { return generic }
        let now = time(nil)
        let date = { (t: time_t) in ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(t))) }
        if leaf.notValidAfter < now { return "TLS: the coordinator's certificate has expired (valid until \(date(leaf.notValidAfter)))" }
        if leaf.notValidBefore > now { return "TLS: the coordinator's certificate is not valid yet (from \(date(leaf.notValidBefore)))" }
        return generic
    }

    /// The leaf certificate the coordinator presents, taken during a handshake that is then
    /// refused (nothing else is sent).
    static func peerCertificate(_ addr: HostPort, context: NIOSSLContext) async -> NIOSSLCertificate? {
        let leaf = NIOLockedValueBox<NIOSSLCertificate?>(nil)
        let name = serverName(addr)
        let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    let look: NIOSSLCustomVerificationCallback = { certs, promise in
                        leaf.withLockedValue { $0 = certs.first }
                        promise.succeed(NIOSSLVerificationResult.failed)
                    }
                    try ch.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: name, customVerificationCallback: look))
                }
            }
            .connect(host: addr.host, port: addr.port).get()
        try? await channel?.closeFuture.get()
        return leaf.withLockedValue { $0 }
    }
}
