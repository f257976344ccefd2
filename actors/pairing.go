package actors

// The pairing string of a serving hub: the JSON its QR code carries.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/kv"
)

// ErrBadPairing: a pairing string that is not a hub's.
var ErrBadPairing = errors.New("actors: malformed pairing string")

// Pairing is a hub's pairing string: the Hikma app's QR payload
// {"type":"sync_hub","url":...,"id":...,"pk":...} (reference §2.2; the
// app reads type and url) plus the TLS address of the hub's
// /api/v2/sync and its certificate's fingerprint, which Go nodes pin.
type Pairing struct {
	Type string `json:"type"` // kv.PeerHub
	// URL is where the hub serves the Hikma RPC (/rpc/*), plain HTTP.
	URL string `json:"url"`
	ID  string `json:"id"` // the hub's node id
	// PK is the hub's X25519 public key, base64url without padding.
	PK string `json:"pk"`
	// HTTPS is where the hub serves /api/v2/sync over TLS ("" when it
	// does not); FP pins its certificate (Fingerprint).
	HTTPS string `json:"https,omitempty"`
	FP    string `json:"fp,omitempty"`
	// RPC is where the hub serves native RPC, host:port ("" when it
	// does not): Go nodes sync there, sealed under PK.
	RPC string `json:"rpc,omitempty"`
	// Disc is where the hub answers discovery queries, UDP host:port
	// ("" when it does not): a device finds the hub there, or by
	// broadcast on its port, after the hub's address changed.
	Disc string `json:"disc,omitempty"`
}

// String is the pairing string: compact JSON, fields in a fixed order.
func (p Pairing) String() string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		panic(fmt.Sprintf("actors: encoding a pairing: %v", err))
	}
	return strings.TrimSpace(b.String())
}

// SyncURL is the URL a Go node syncs with: native RPC (rpc://host:port)
// when the hub serves it, else the TLS one when it serves that, else the
// plain one (a hub served with --insecure-http).
func (p Pairing) SyncURL() string {
	if p.RPC != "" {
		return RPCScheme + p.RPC
	}
	if p.HTTPS != "" {
		return p.HTTPS
	}
	return p.URL
}

// Pairing returns the pairing string of this hub serving the Hikma RPC
// at httpURL and /api/v2/sync at httpsURL ("" when it serves no TLS).
// A URL on an unspecified address (0.0.0.0, [::]) names the host's
// first LAN address instead, which is what a device can reach.
func (n *Node) Pairing(httpURL, httpsURL string) (Pairing, error) {
	if n.info.Kind != KindHub {
		return Pairing{}, fmt.Errorf("%w: only a hub has a pairing string, this is a %s", ErrNotServing, n.info.Kind)
	}
	p := Pairing{Type: kv.PeerHub, URL: reachable(httpURL), ID: n.info.NodeID, PK: n.info.PublicKey}
	if httpsURL != "" {
		_, fp, err := n.TLSCertificate()
		if err != nil {
			return Pairing{}, err
		}
		p.HTTPS, p.FP = reachable(httpsURL), fp
	}
	return p, nil
}

// reachable replaces an unspecified host in u by the first non-loopback
// IPv4 address of the host's interfaces (u unchanged when there is
// none).
func reachable(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return u
	}
	ip := net.ParseIP(pu.Hostname())
	if ip == nil || !ip.IsUnspecified() {
		return u
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return u
	}
	for _, a := range addrs {
		if in, ok := a.(*net.IPNet); ok && in.IP.To4() != nil && !in.IP.IsLoopback() && !in.IP.IsLinkLocalUnicast() {
			pu.Host = net.JoinHostPort(in.IP.String(), pu.Port())
			return pu.String()
		}
	}
	return u
}

// ParsePairing reads a pairing string, refusing one that is not a
// hub's: type sync_hub, an http URL, an id, a 32-byte X25519 key, and
// an https URL and a fingerprint given together.
func ParsePairing(s string) (Pairing, error) {
	var p Pairing
	dec := json.NewDecoder(strings.NewReader(strings.TrimSpace(s)))
	if err := dec.Decode(&p); err != nil {
		return Pairing{}, fmt.Errorf("%w: not JSON (want the hub's {\"type\":\"sync_hub\",...} from `node pairing`): %v", ErrBadPairing, err)
	}
	if dec.More() {
		return Pairing{}, fmt.Errorf("%w: text after the JSON object", ErrBadPairing)
	}
	okURL := func(raw, scheme string) bool {
		u, err := url.Parse(raw)
		return err == nil && u.Scheme == scheme && u.Host != "" && u.RawQuery == "" && u.Fragment == ""
	}
	switch {
	case p.Type != kv.PeerHub:
		return Pairing{}, fmt.Errorf("%w: type %q, want %q", ErrBadPairing, p.Type, kv.PeerHub)
	case !okURL(p.URL, "http") && !okURL(p.URL, "https"):
		return Pairing{}, fmt.Errorf("%w: url %q is not http(s)://host[:port]", ErrBadPairing, p.URL)
	case p.ID == "":
		return Pairing{}, fmt.Errorf("%w: no hub id", ErrBadPairing)
	case (p.HTTPS == "") != (p.FP == ""):
		return Pairing{}, fmt.Errorf("%w: https and fp come together", ErrBadPairing)
	case p.HTTPS != "" && !okURL(p.HTTPS, "https"):
		return Pairing{}, fmt.Errorf("%w: https %q is not https://host[:port]", ErrBadPairing, p.HTTPS)
	case p.FP != "" && !validFingerprint(p.FP):
		return Pairing{}, fmt.Errorf("%w: fp %q is not a sha256 in base64url", ErrBadPairing, p.FP)
	case p.RPC != "" && !validHostPort(p.RPC):
		return Pairing{}, fmt.Errorf("%w: rpc %q is not host:port", ErrBadPairing, p.RPC)
	case p.Disc != "" && !validHostPort(p.Disc):
		return Pairing{}, fmt.Errorf("%w: disc %q is not host:port", ErrBadPairing, p.Disc)
	}
	if _, err := codec.DecodePublicKey(p.PK); err != nil {
		return Pairing{}, fmt.Errorf("%w: pk: %v", ErrBadPairing, err)
	}
	return p, nil
}

// PairingPeer is the PeerConfig of the hub a pairing string names: its
// sync URL (SyncURL: native RPC when served, else TLS), public key and,
// certificate pin, node id and discovery address. Over native RPC the
// public key is the pin: a hub presenting another one is refused
// (ErrHubKeyMismatch); over TLS the certificate's fingerprint is.
func PairingPeer(p Pairing) (PeerConfig, error) {
	pk, err := codec.DecodePublicKey(p.PK)
	if err != nil {
		return PeerConfig{}, fmt.Errorf("%w: pk: %v", ErrBadPairing, err)
	}
	return PeerConfig{Type: kv.PeerHub, URL: p.SyncURL(), PublicKey: pk.Bytes(), NodeID: p.ID,
		TLSFingerprint: p.FP, Discovery: p.Disc}, nil
}

// validHostPort reports whether s is host:port with a non-empty host
// and a port.
func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	return err == nil && host != "" && port != ""
}

// reachableAddr is reachable for a host:port.
func reachableAddr(hostport string) string {
	return strings.TrimPrefix(reachable("rpc://"+hostport), "rpc://")
}

// upsertDevice notes a device a hub serves (over the Hikma or the
// native RPC) as a mobile_app peer with the public key of its session,
// and its name when it gave one (fallback for a new peer otherwise):
// made when first seen, updated after, so CreatedAt is when it was
// first seen and UpdatedAt when last. A peer of that id of another type
// is left as it is; a revoked one stays revoked. Session keys are
// never stored.
func upsertDevice(st *kv.Store, id string, pub []byte, name, fallback string) error {
	err := st.UpdatePeer(id, func(p *kv.Peer) {
		if p.Type == kv.PeerMobile {
			p.PublicKey = pub
			if name != "" {
				p.Name = name
			}
		}
	})
	if errors.Is(err, kv.ErrNotFound) {
		if name == "" {
			name = fallback
		}
		err = st.PutPeer(kv.Peer{ID: id, Type: kv.PeerMobile, Status: kv.StatusActive, PublicKey: pub, Name: name})
	}
	return err
}
