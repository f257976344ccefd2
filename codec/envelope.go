package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Envelopes: pairing keys and sealed payloads.
//
// # Pairing
//
// A hub keeps a static X25519 key pair; a client makes a fresh one per
// handshake ([GenerateKey]). Public keys travel as base64url without
// padding ([EncodePublicKey], [DecodePublicKey]). Both sides compute the
// same 32-byte session key with [DeriveSessionKey]:
//
//	shared = X25519(own private, peer public)        (all zero is refused)
//	key    = HKDF-SHA256(ikm=shared, salt="hikma-health-pairing-v1",
//	                     info=hub_pub(32) ‖ client_pub(32), L=32)
//
// The [Role] argument says which side the caller is, so the two public keys
// always go into info in the hub-then-client order.
//
// # Hikma-compatible envelope
//
// [Seal] and [Open] are byte-compatible with the Hikma hub (Rust, ring) and
// mobile (@noble/ciphers): AES-256-GCM under the session key, a random
// 12-byte nonce read from the caller's reader, the [Direction] as AAD, and
// the wire blob base64url-no-pad(nonce ‖ ciphertext ‖ tag(16)). They carry
// no replay protection: an attacker who records a blob can send it again
// and Open accepts it. That is the reference protocol, kept as is.
//
// # Native channel with replay protection
//
// Between two clinicsync nodes, use a [Sealer] and an [Opener] instead. Each
// direction gets its own key, HKDF-SHA256(ikm=session key, salt=empty,
// info="clinicsync v1 c2s" or "clinicsync v1 s2c", L=32), and the nonce is
// four zero bytes followed by a big-endian uint64 counter that the Sealer
// increments. The layout is the same as above (nonce ‖ ciphertext ‖ tag),
// as raw bytes rather than base64: native RPC carries bytes. An Opener accepts only
// counters above the last one it accepted, so a replayed or reordered
// envelope fails with [ErrEnvelopeReplayed]; gaps (lost envelopes) are
// allowed. A retry must therefore be sealed again, not resent.
//
// # Encoding
//
// Decoding is strict, as in the Rust base64 crate and @scure/base: no
// padding, no line breaks, no stray bits in the last character. Every byte
// string therefore has exactly one accepted encoding.
//
// # Limits
//
// Blobs longer than [MaxEnvelopeSize] characters are refused before they
// are decoded, and Seal refuses plaintexts longer than [MaxPlaintextSize],
// so everything sealed here can be opened here.

// Sizes, in bytes.
const (
	PublicKeySize  = 32 // X25519 public key
	SessionKeySize = 32 // AES-256 key
	NonceSize      = 12 // AES-GCM nonce
	TagSize        = 16 // AES-GCM tag

	// MaxEnvelopeSize is the longest blob, in base64 characters, that Open
	// and Opener.Open accept (16 MiB).
	MaxEnvelopeSize = 16 << 20
	// MaxPlaintextSize is the longest plaintext whose blob fits in
	// MaxEnvelopeSize (12 MiB less the nonce and tag).
	MaxPlaintextSize = MaxEnvelopeSize/4*3 - NonceSize - TagSize
	// MaxSealedSize is the longest native envelope (raw bytes) that
	// Opener.Open accepts: MaxPlaintextSize sealed.
	MaxSealedSize = MaxPlaintextSize + NonceSize + TagSize
)

// pairingSalt is the HKDF salt of the Hikma pairing.
const pairingSalt = "hikma-health-pairing-v1"

// HKDF info labels of the native channel's per-direction keys.
const (
	labelClientToHub = "clinicsync v1 c2s"
	labelHubToClient = "clinicsync v1 s2c"
)

// b64 is base64url without padding, rejecting non-zero trailing bits.
var b64 = base64.RawURLEncoding.Strict()

// decodeB64 decodes strict base64url without padding. encoding/base64
// skips CR and LF even in strict mode; they are refused here.
func decodeB64(s string) ([]byte, error) {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return nil, fmt.Errorf("line break at input byte %d", i)
	}
	return b64.DecodeString(s)
}

// Role is the side of a pairing a caller is on. Between two clinicsync
// nodes, the node that started the handshake is the client.
type Role uint8

const (
	RoleHub Role = iota + 1
	RoleClient
)

func (r Role) String() string {
	switch r {
	case RoleHub:
		return "hub"
	case RoleClient:
		return "client"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

func (r Role) valid() bool { return r == RoleHub || r == RoleClient }

// Direction says what an envelope carries. Its text is the AES-GCM AAD, so
// an envelope opened as the wrong direction fails authentication.
type Direction string

const (
	DirCommand         Direction = "command"
	DirQuery           Direction = "query"
	DirCommandResponse Direction = "command_response"
	DirQueryResponse   Direction = "query_response"
)

// Valid reports whether d is one of the four directions.
func (d Direction) Valid() bool {
	switch d {
	case DirCommand, DirQuery, DirCommandResponse, DirQueryResponse:
		return true
	}
	return false
}

func (d Direction) check() error {
	if !d.Valid() {
		return fmt.Errorf("%w: %q", ErrUnknownDirection, string(d))
	}
	return nil
}

// GenerateKey makes an X25519 key pair from 32 bytes read from rand.
// It reads rand itself because, since Go 1.26, ecdh's GenerateKey ignores
// its reader; reading it here keeps seeded runs reproducible.
func GenerateKey(rand io.Reader) (*ecdh.PrivateKey, error) {
	var seed [32]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("codec: reading randomness for X25519 key: %w", err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		panic("codec: X25519 refused a 32-byte private key: " + err.Error())
	}
	return priv, nil
}

// EncodePublicKey returns pub as base64url without padding (43 characters).
// It panics if pub is not an X25519 key.
func EncodePublicKey(pub *ecdh.PublicKey) string {
	mustX25519(pub.Curve())
	return b64.EncodeToString(pub.Bytes())
}

// DecodePublicKey parses a base64url-no-pad X25519 public key. Errors wrap
// ErrPublicKey and say whether the encoding or the length was wrong. Any 32
// bytes are accepted; low-order points are refused later, by
// DeriveSessionKey.
func DecodePublicKey(s string) (*ecdh.PublicKey, error) {
	raw, err := decodeB64(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url without padding: %v", ErrPublicKey, err)
	}
	if len(raw) != PublicKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrPublicKey, len(raw), PublicKeySize)
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		panic("codec: X25519 refused a 32-byte public key: " + err.Error())
	}
	return pub, nil
}

// DeriveSessionKey computes the 32-byte session key shared by a hub and a
// client (see Pairing above). role is the caller's side: a hub passes its
// static private key and the client's public key, a client its own private
// key and the hub's public key. Both get the same key. A peer key that
// makes the shared secret all zero fails with ErrZeroSharedSecret.
func DeriveSessionKey(role Role, priv *ecdh.PrivateKey, peer *ecdh.PublicKey) ([]byte, error) {
	if !role.valid() {
		return nil, fmt.Errorf("%w: %v", ErrUnknownRole, role)
	}
	mustX25519(priv.Curve())
	mustX25519(peer.Curve())
	shared, err := priv.ECDH(peer)
	if err != nil {
		// With both keys on X25519, ECDH fails only for a low-order peer key.
		return nil, fmt.Errorf("%w: %v", ErrZeroSharedSecret, err)
	}
	if subtle.ConstantTimeCompare(shared, make([]byte, len(shared))) == 1 {
		return nil, ErrZeroSharedSecret
	}
	own := priv.PublicKey().Bytes()
	hubPub, clientPub := own, peer.Bytes()
	if role == RoleClient {
		hubPub, clientPub = clientPub, own
	}
	info := make([]byte, 0, 2*PublicKeySize)
	info = append(append(info, hubPub...), clientPub...)
	key, err := hkdf.Key(sha256.New, shared, []byte(pairingSalt), string(info), SessionKeySize)
	if err != nil {
		panic("codec: HKDF-SHA256 refused a 32-byte output: " + err.Error())
	}
	return key, nil
}

func mustX25519(c ecdh.Curve) {
	if c != ecdh.X25519() {
		panic(fmt.Sprintf("codec: pairing keys must be X25519, got %v", c))
	}
}

// newAEAD returns AES-256-GCM under key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != SessionKeySize {
		return nil, fmt.Errorf("%w: got %d bytes", ErrSessionKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("codec: AES refused a 32-byte key: " + err.Error())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("codec: AES-GCM setup failed: " + err.Error())
	}
	return aead, nil
}

// Seal encrypts plaintext for direction aad under the session key, with a
// 12-byte nonce read from rand, and returns base64url-no-pad(nonce ‖
// ciphertext ‖ tag). This is the Hikma wire format; see Open.
func Seal(key []byte, aad Direction, plaintext []byte, rand io.Reader) (string, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return "", err
	}
	if err := checkSeal(aad, plaintext); err != nil {
		return "", err
	}
	var nonce [NonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return "", fmt.Errorf("codec: reading envelope nonce: %w", err)
	}
	return sealWith(aead, &nonce, aad, plaintext), nil
}

// Open reverses Seal. Its errors wrap, in the order checked:
// ErrSessionKeySize, ErrUnknownDirection, ErrEnvelopeTooLarge,
// ErrEnvelopeBase64, ErrEnvelopeTruncated (fewer than 28 bytes) and
// ErrEnvelopeAuth (wrong key, wrong direction or altered bytes).
func Open(key []byte, aad Direction, blob string) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce, sealed, err := splitEnvelope(aad, blob)
	if err != nil {
		return nil, err
	}
	return openWith(aead, aad, nonce, sealed)
}

func checkSeal(aad Direction, plaintext []byte) error {
	if err := aad.check(); err != nil {
		return err
	}
	if len(plaintext) > MaxPlaintextSize {
		return fmt.Errorf("%w: plaintext is %d bytes, limit %d", ErrEnvelopeTooLarge, len(plaintext), MaxPlaintextSize)
	}
	return nil
}

func sealWith(aead cipher.AEAD, nonce *[NonceSize]byte, aad Direction, plaintext []byte) string {
	return b64.EncodeToString(sealRaw(aead, nonce, aad, plaintext))
}

// sealRaw returns nonce ‖ ciphertext ‖ tag.
func sealRaw(aead cipher.AEAD, nonce *[NonceSize]byte, aad Direction, plaintext []byte) []byte {
	out := make([]byte, NonceSize, NonceSize+len(plaintext)+TagSize)
	copy(out, nonce[:])
	return aead.Seal(out, nonce[:], plaintext, []byte(aad))
}

// splitEnvelope checks aad and the blob's size and encoding, and returns
// the nonce and ciphertext‖tag.
func splitEnvelope(aad Direction, blob string) (nonce, sealed []byte, err error) {
	if err := aad.check(); err != nil {
		return nil, nil, err
	}
	if len(blob) > MaxEnvelopeSize {
		return nil, nil, fmt.Errorf("%w: %d characters, limit %d", ErrEnvelopeTooLarge, len(blob), MaxEnvelopeSize)
	}
	raw, err := decodeB64(blob)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrEnvelopeBase64, err)
	}
	return splitSealed(raw)
}

// splitSealed splits nonce ‖ ciphertext ‖ tag.
func splitSealed(raw []byte) (nonce, sealed []byte, err error) {
	if len(raw) < NonceSize+TagSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrEnvelopeTruncated, len(raw), NonceSize+TagSize)
	}
	return raw[:NonceSize], raw[NonceSize:], nil
}

func openWith(aead cipher.AEAD, aad Direction, nonce, sealed []byte) ([]byte, error) {
	plaintext, err := aead.Open(nil, nonce, sealed, []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: wrong key, not a %q envelope, or altered", ErrEnvelopeAuth, string(aad))
	}
	return plaintext, nil
}

// channelKey returns the native channel key for one direction: the one
// role sends on if sending, else the one it receives on.
func channelKey(sessionKey []byte, role Role, sending bool) ([]byte, error) {
	if len(sessionKey) != SessionKeySize {
		return nil, fmt.Errorf("%w: got %d bytes", ErrSessionKeySize, len(sessionKey))
	}
	if !role.valid() {
		return nil, fmt.Errorf("%w: %v", ErrUnknownRole, role)
	}
	label := labelHubToClient
	if (role == RoleClient) == sending {
		label = labelClientToHub
	}
	key, err := hkdf.Key(sha256.New, sessionKey, nil, label, SessionKeySize)
	if err != nil {
		panic("codec: HKDF-SHA256 refused a 32-byte output: " + err.Error())
	}
	return key, nil
}

// counterNonce is four zero bytes and n big-endian.
func counterNonce(n uint64) [NonceSize]byte {
	var nonce [NonceSize]byte
	binary.BigEndian.PutUint64(nonce[4:], n)
	return nonce
}

// Sealer seals the envelopes one side of a native channel sends, with
// counter nonces 0, 1, 2, ... (see Native channel above). It is not safe
// for concurrent use; one owner holds it for the session.
type Sealer struct {
	aead cipher.AEAD
	next uint64 // counter of the next envelope
}

// NewSealer returns the Sealer for the side role of a session; it seals
// with the client-to-hub key if role is RoleClient, else hub-to-client.
func NewSealer(sessionKey []byte, role Role) (*Sealer, error) {
	key, err := channelKey(sessionKey, role, true)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext for direction aad with the next counter and
// returns nonce ‖ ciphertext ‖ tag, as raw bytes (native RPC carries
// bytes; there is no base64). After 2^64-1 envelopes it fails with
// ErrCounterExhausted rather than reuse a nonce.
func (s *Sealer) Seal(aad Direction, plaintext []byte) ([]byte, error) {
	if err := checkSeal(aad, plaintext); err != nil {
		return nil, err
	}
	if s.next == ^uint64(0) {
		return nil, ErrCounterExhausted
	}
	nonce := counterNonce(s.next)
	s.next++
	return sealRaw(s.aead, &nonce, aad, plaintext), nil
}

// Opener opens the envelopes one side of a native channel receives and
// refuses any whose counter is not above the last one accepted. It is not
// safe for concurrent use.
type Opener struct {
	aead cipher.AEAD
	seen bool   // an envelope has been accepted
	last uint64 // counter of the last accepted envelope, if seen
}

// NewOpener returns the Opener for the side role of a session: it opens
// what the peer's Sealer seals. Both ends pass their own role.
func NewOpener(sessionKey []byte, role Role) (*Opener, error) {
	key, err := channelKey(sessionKey, role, false)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Opener{aead: aead}, nil
}

// Open decrypts sealed (nonce ‖ ciphertext ‖ tag, as Seal returns it)
// as direction aad. Its errors wrap, in the order checked,
// ErrUnknownDirection, ErrEnvelopeTooLarge (more than MaxSealedSize
// bytes), ErrEnvelopeTruncated, ErrEnvelopeAuth and, for an authentic
// envelope whose counter is not above the last accepted one,
// ErrEnvelopeReplayed. A failed Open leaves the Opener unchanged.
func (o *Opener) Open(aad Direction, sealed []byte) ([]byte, error) {
	if err := aad.check(); err != nil {
		return nil, err
	}
	if len(sealed) > MaxSealedSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrEnvelopeTooLarge, len(sealed), MaxSealedSize)
	}
	nonce, ct, err := splitSealed(sealed)
	if err != nil {
		return nil, err
	}
	var zero [4]byte
	if subtle.ConstantTimeCompare(nonce[:4], zero[:]) != 1 {
		return nil, fmt.Errorf("%w: nonce is not a channel counter", ErrEnvelopeAuth)
	}
	plaintext, err := openWith(o.aead, aad, nonce, ct)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint64(nonce[4:])
	if o.seen && n <= o.last {
		return nil, fmt.Errorf("%w: counter %d, last accepted %d", ErrEnvelopeReplayed, n, o.last)
	}
	o.seen, o.last = true, n
	return plaintext, nil
}
