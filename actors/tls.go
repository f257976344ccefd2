package actors

// A hub's TLS identity: the self-generated certificate its
// /api/v2/sync surface is served with on the LAN (serve --https), and
// the client side that accepts exactly the certificate a device paired
// with.
//
// The certificate is not meant to be verified by a certificate
// authority: Go clients pin it by fingerprint (the sha256 of its DER,
// in the pairing string) and ignore its names and chain. Its SANs
// (localhost, 127.0.0.1, ::1) are only there for tools such as curl
// --cacert on the hub itself; a hub whose LAN address changes keeps
// its certificate and its devices keep trusting it.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of a hub's TLS identity inside its data directory: the
// certificate (PEM, public) and its ECDSA P-256 private key (PEM,
// mode 0600, like the node key).
const (
	TLSCertFile = "tls.crt"
	TLSKeyFile  = "tls.key"
)

// tlsValidity is how long a hub's certificate lasts: clients pin it, so
// it never needs renewing while the hub lives.
const tlsValidity = 100 * 365 * 24 * time.Hour

// ErrCertMismatch: a pinned hub presented a certificate other than the
// one its pairing string names.
var ErrCertMismatch = errors.New("the hub presented another certificate than the one paired: re-pair with its pairing string")

// Fingerprint is the pin of a certificate: the sha256 of its DER,
// base64url without padding (43 characters).
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validFingerprint reports whether fp has a fingerprint's shape.
func validFingerprint(fp string) bool {
	b, err := base64.RawURLEncoding.DecodeString(fp)
	return err == nil && len(b) == sha256.Size
}

// TLSCertificate returns the hub's TLS certificate and its fingerprint,
// creating and persisting them on first use (serve --https). Only a
// hub has one (ErrNotServing).
func (n *Node) TLSCertificate() (tls.Certificate, string, error) {
	if n.info.Kind != KindHub {
		return tls.Certificate{}, "", fmt.Errorf("%w: only a hub serves TLS itself (a cloud sits behind a TLS-terminating proxy), this is a %s", ErrNotServing, n.info.Kind)
	}
	if _, err := n.file(TLSCertFile); err != nil {
		return tls.Certificate{}, "", err
	}
	certPath, keyPath := filepath.Join(n.dir, TLSCertFile), filepath.Join(n.dir, TLSKeyFile)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		return cert, Fingerprint(cert.Certificate[0]), nil
	}
	_, cerr := os.Stat(certPath)
	_, kerr := os.Stat(keyPath)
	if !errors.Is(cerr, fs.ErrNotExist) || !errors.Is(kerr, fs.ErrNotExist) {
		// A damaged identity is not silently replaced: every paired
		// device would refuse the new one.
		return tls.Certificate{}, "", fmt.Errorf("%w: %s / %s: %v (remove both to make a new certificate, then re-pair the devices)", ErrKeyFile, TLSCertFile, TLSKeyFile, err)
	}
	if err := n.newTLSCertificate(certPath, keyPath); err != nil {
		return tls.Certificate{}, "", err
	}
	cert, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return cert, Fingerprint(cert.Certificate[0]), nil
}

// newTLSCertificate makes a self-signed ECDSA P-256 certificate and
// writes it: the key first, so that a crash leaves no certificate
// without its key.
func (n *Node) newTLSCertificate(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("actors: making the TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("actors: making the TLS certificate: %w", err)
	}
	now := time.Now()
	if n.clock != nil {
		now = n.clock.Now()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "clinicsync hub " + n.info.NodeID},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(tlsValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("actors: making the TLS certificate: %w", err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("actors: encoding the TLS key: %w", err)
	}
	if err := writePrivateFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})); err != nil {
		return err
	}
	if err := writePrivateFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return err
	}
	return os.Chmod(certPath, 0o644) // public
}

// ServerTLSConfig is the hub's TLS configuration for serve --https.
func ServerTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// PinnedTLSConfig accepts exactly the certificate whose fingerprint is
// fp, whatever its names and issuer: the chain and host name checks are
// replaced by the pin (InsecureSkipVerify only ever with
// VerifyPeerCertificate). Any other certificate fails the handshake
// with ErrCertMismatch.
func PinnedTLSConfig(fp string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the pin below is the check
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || Fingerprint(raw[0]) != fp {
				return ErrCertMismatch
			}
			return nil
		},
	}
}

// pinnedClient is an HTTP client that trusts exactly the certificate
// fp names.
func pinnedClient(fp string) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = PinnedTLSConfig(fp)
	return &http.Client{Transport: t}
}

// PlainHTTPGuard is what a hub serves on its plain HTTP listener: the
// Hikma app's RPC (/rpc/*, sealed end to end) and /healthz go to h;
// the REST surface (/api/..., which carries Basic passwords, sign-in
// passwords and rows in clear) is refused with 403 and a message that
// names httpsURL ("" when the hub serves no TLS) and --insecure-http.
func PlainHTTPGuard(h http.Handler, httpsURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			h.ServeHTTP(w, r)
			return
		}
		where := "serve it with `node serve --https ADDR`"
		if httpsURL != "" {
			where = "use " + httpsURL + r.URL.Path + " (pair with the hub's pairing string)"
		}
		writeJSON(w, http.StatusForbidden, map[string]string{"error": fmt.Sprintf(
			"this hub serves %s over TLS only, as it carries passwords and patient rows: %s; `node serve --insecure-http` allows plain HTTP", r.URL.Path, where)})
	})
}
