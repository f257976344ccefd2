package codec

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var allDirections = []Direction{DirCommand, DirQuery, DirCommandResponse, DirQueryResponse}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func x25519Private(t testing.TB, raw []byte) *ecdh.PrivateKey {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func x25519Public(t testing.TB, raw []byte) *ecdh.PublicKey {
	t.Helper()
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestX25519RFC7748 checks the Diffie-Hellman vector of RFC 7748 §6.1,
// through GenerateKey (fed the published private keys as "randomness") and
// DeriveSessionKey's symmetry.
func TestX25519RFC7748(t *testing.T) {
	alicePriv := unhex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	alicePub := unhex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	bobPriv := unhex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
	bobPub := unhex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	shared := unhex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

	alice, err := GenerateKey(bytes.NewReader(alicePriv))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := GenerateKey(bytes.NewReader(bobPriv))
	if err != nil {
		t.Fatal(err)
	}
	if got := alice.PublicKey().Bytes(); !bytes.Equal(got, alicePub) {
		t.Errorf("Alice public key = %x, want %x", got, alicePub)
	}
	if got := bob.PublicKey().Bytes(); !bytes.Equal(got, bobPub) {
		t.Errorf("Bob public key = %x, want %x", got, bobPub)
	}
	for _, c := range []struct {
		name string
		priv *ecdh.PrivateKey
		peer []byte
	}{{"Alice", alice, bobPub}, {"Bob", bob, alicePub}} {
		got, err := c.priv.ECDH(x25519Public(t, c.peer))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, shared) {
			t.Errorf("%s's shared secret = %x, want %x", c.name, got, shared)
		}
	}

	// Alice as hub, Bob as client: both sides derive one key.
	hubKey, err := DeriveSessionKey(RoleHub, alice, x25519Public(t, bobPub))
	if err != nil {
		t.Fatal(err)
	}
	clientKey, err := DeriveSessionKey(RoleClient, bob, x25519Public(t, alicePub))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hubKey, clientKey) || len(hubKey) != SessionKeySize {
		t.Errorf("hub key %x, client key %x: want equal 32-byte keys", hubKey, clientKey)
	}
	// Swapping the roles swaps info's halves, so the key changes.
	swapped, err := DeriveSessionKey(RoleClient, alice, x25519Public(t, bobPub))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(swapped, hubKey) {
		t.Error("swapping roles gave the same key; info order is not enforced")
	}
}

// vectors is testdata/envelope/vectors.json, written by gen.mjs with
// Node's crypto module.
type vectors struct {
	Generator     string `json:"generator"`
	HubPrivate    string `json:"hub_private"`
	HubPublic     string `json:"hub_public"`
	ClientPrivate string `json:"client_private"`
	ClientPublic  string `json:"client_public"`
	SharedSecret  string `json:"shared_secret"`
	SessionKey    string `json:"session_key"`
	Hikma         []struct {
		Direction Direction `json:"direction"`
		Plaintext string    `json:"plaintext"`
		Nonce     string    `json:"nonce"`
		Blob      string    `json:"blob"`
	} `json:"hikma"`
	NativeC2SKey string `json:"native_c2s_key"`
	NativeS2CKey string `json:"native_s2c_key"`
	Native       []struct {
		Sender    string    `json:"sender"`
		Counter   uint64    `json:"counter,string"`
		Direction Direction `json:"direction"`
		Plaintext string    `json:"plaintext"`
		Blob      string    `json:"blob"`
	} `json:"native"`
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "envelope", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	if len(v.Hikma) != len(allDirections) || len(v.Native) == 0 {
		t.Fatalf("vectors.json: %d hikma and %d native vectors", len(v.Hikma), len(v.Native))
	}
	return v
}

// TestHikmaVectors: keys, session key and blobs computed by Node (OpenSSL)
// match Go, in both directions: our seals equal theirs for the same nonce,
// and theirs open here.
func TestHikmaVectors(t *testing.T) {
	v := loadVectors(t)
	hub := x25519Private(t, unhex(t, v.HubPrivate))
	client := x25519Private(t, unhex(t, v.ClientPrivate))
	if got := EncodePublicKey(hub.PublicKey()); got != v.HubPublic {
		t.Errorf("hub public key = %s, want %s", got, v.HubPublic)
	}
	if got := EncodePublicKey(client.PublicKey()); got != v.ClientPublic {
		t.Errorf("client public key = %s, want %s", got, v.ClientPublic)
	}
	hubPub, err := DecodePublicKey(v.HubPublic)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, err := DecodePublicKey(v.ClientPublic)
	if err != nil {
		t.Fatal(err)
	}
	if !hubPub.Equal(hub.PublicKey()) || !clientPub.Equal(client.PublicKey()) {
		t.Fatal("decoded public keys differ from the private keys' public keys")
	}
	shared, err := hub.ECDH(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(shared); got != v.SharedSecret {
		t.Errorf("shared secret = %s, want %s", got, v.SharedSecret)
	}

	want := unhex(t, v.SessionKey)
	for _, side := range []struct {
		role Role
		priv *ecdh.PrivateKey
		peer *ecdh.PublicKey
	}{{RoleHub, hub, clientPub}, {RoleClient, client, hubPub}} {
		got, err := DeriveSessionKey(side.role, side.priv, side.peer)
		if err != nil {
			t.Fatalf("%v: %v", side.role, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v session key = %x, want %x", side.role, got, want)
		}
	}

	for _, c := range v.Hikma {
		t.Run(string(c.Direction), func(t *testing.T) {
			nonce := unhex(t, c.Nonce)
			sealed, err := Seal(want, c.Direction, []byte(c.Plaintext), bytes.NewReader(nonce))
			if err != nil {
				t.Fatal(err)
			}
			if sealed != c.Blob {
				t.Errorf("Seal = %s\nwant   %s", sealed, c.Blob)
			}
			opened, err := Open(want, c.Direction, c.Blob)
			if err != nil {
				t.Fatal(err)
			}
			if string(opened) != c.Plaintext {
				t.Errorf("Open = %q, want %q", opened, c.Plaintext)
			}
		})
	}
}

// TestNativeVectors pins the native channel's format against Node.
func TestNativeVectors(t *testing.T) {
	v := loadVectors(t)
	session := unhex(t, v.SessionKey)
	for _, c := range []struct {
		role    Role
		sending bool
		want    string
	}{
		{RoleClient, true, v.NativeC2SKey},
		{RoleHub, false, v.NativeC2SKey},
		{RoleHub, true, v.NativeS2CKey},
		{RoleClient, false, v.NativeS2CKey},
	} {
		got, err := channelKey(session, c.role, c.sending)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != c.want {
			t.Errorf("channelKey(%v, sending=%v) = %x, want %s", c.role, c.sending, got, c.want)
		}
	}

	sealers := map[string]*Sealer{}
	openers := map[string]*Opener{}
	for name, role := range map[string]Role{"hub": RoleHub, "client": RoleClient} {
		s, err := NewSealer(session, role)
		if err != nil {
			t.Fatal(err)
		}
		sealers[name] = s
		// The opener receiving from name sits on the other side.
		other := RoleHub
		if role == RoleHub {
			other = RoleClient
		}
		o, err := NewOpener(session, other)
		if err != nil {
			t.Fatal(err)
		}
		openers[name] = o
	}
	for _, c := range v.Native {
		s := sealers[c.Sender]
		s.next = c.Counter
		got, err := s.Seal(c.Direction, []byte(c.Plaintext))
		if err != nil {
			t.Fatal(err)
		}
		if b64.EncodeToString(got) != c.Blob {
			t.Errorf("%s counter %d: Seal = %s\nwant %s (base64url)", c.Sender, c.Counter, b64.EncodeToString(got), c.Blob)
		}
		raw, err := decodeB64(c.Blob)
		if err != nil {
			t.Fatal(err)
		}
		opened, err := openers[c.Sender].Open(c.Direction, raw)
		if err != nil {
			t.Fatalf("%s counter %d: %v", c.Sender, c.Counter, err)
		}
		if string(opened) != c.Plaintext {
			t.Errorf("%s counter %d: Open = %q, want %q", c.Sender, c.Counter, opened, c.Plaintext)
		}
	}
}

// fixedKey is a session key for tests that need no pairing.
var fixedKey = bytes.Repeat([]byte{0x42}, SessionKeySize)

func seededReader(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

func mustSeal(t testing.TB, key []byte, aad Direction, plaintext string, r io.Reader) string {
	t.Helper()
	blob, err := Seal(key, aad, []byte(plaintext), r)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestSealOpenRoundTrip(t *testing.T) {
	r := seededReader(1)
	for _, dir := range allDirections {
		for _, pt := range []string{"", "x", `{"command":"ping","data":{},"token":null}`, strings.Repeat("ab", 5000)} {
			blob := mustSeal(t, fixedKey, dir, pt, r)
			if want := b64.EncodedLen(NonceSize + len(pt) + TagSize); len(blob) != want {
				t.Errorf("blob length %d, want %d", len(blob), want)
			}
			got, err := Open(fixedKey, dir, blob)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != pt {
				t.Errorf("Open = %q, want %q", got, pt)
			}
		}
	}
	// The nonce is the first 12 bytes read, so seals of one plaintext differ.
	a := mustSeal(t, fixedKey, DirQuery, "same", r)
	b := mustSeal(t, fixedKey, DirQuery, "same", r)
	if a == b {
		t.Error("two seals with fresh randomness are equal")
	}
	nonce := bytes.Repeat([]byte{7}, NonceSize)
	raw, _ := b64.DecodeString(mustSeal(t, fixedKey, DirQuery, "same", bytes.NewReader(nonce)))
	if !bytes.Equal(raw[:NonceSize], nonce) {
		t.Errorf("nonce on the wire = %x, want %x", raw[:NonceSize], nonce)
	}
}

func TestOpenErrors(t *testing.T) {
	blob := mustSeal(t, fixedKey, DirCommand, `{"command":"ping"}`, seededReader(2))
	raw, err := b64.DecodeString(blob)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := bytes.Repeat([]byte{0x43}, SessionKeySize)

	cases := []struct {
		name string
		key  []byte
		dir  Direction
		blob string
		want error
	}{
		{"wrong key", otherKey, DirCommand, blob, ErrEnvelopeAuth},
		{"wrong direction", fixedKey, DirQuery, blob, ErrEnvelopeAuth},
		{"response direction", fixedKey, DirCommandResponse, blob, ErrEnvelopeAuth},
		{"unknown direction", fixedKey, Direction("Command"), blob, ErrUnknownDirection},
		{"empty direction", fixedKey, "", blob, ErrUnknownDirection},
		{"short key", fixedKey[:16], DirCommand, blob, ErrSessionKeySize},
		{"nil key", nil, DirCommand, blob, ErrSessionKeySize},
		{"empty blob", fixedKey, DirCommand, "", ErrEnvelopeTruncated},
		{"nonce only", fixedKey, DirCommand, b64.EncodeToString(raw[:NonceSize]), ErrEnvelopeTruncated},
		{"one byte short", fixedKey, DirCommand, b64.EncodeToString(raw[:NonceSize+TagSize-1]), ErrEnvelopeTruncated},
		{"nonce and tag, no ciphertext", fixedKey, DirCommand, b64.EncodeToString(raw[:NonceSize+TagSize]), ErrEnvelopeAuth},
		{"ciphertext cut", fixedKey, DirCommand, b64.EncodeToString(raw[:len(raw)-1]), ErrEnvelopeAuth},
		{"bad characters", fixedKey, DirCommand, "not!!valid!!base64!!", ErrEnvelopeBase64},
		{"standard alphabet", fixedKey, DirCommand, base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 30)), ErrEnvelopeBase64},
		{"padded", fixedKey, DirCommand, base64.URLEncoding.EncodeToString(raw), ErrEnvelopeBase64},
		{"line break", fixedKey, DirCommand, blob[:10] + "\n" + blob[10:], ErrEnvelopeBase64},
		{"carriage return", fixedKey, DirCommand, blob + "\r", ErrEnvelopeBase64},
		{"impossible length", fixedKey, DirCommand, blob + "AAA", ErrEnvelopeBase64},
		{"oversized", fixedKey, DirCommand, strings.Repeat("A", MaxEnvelopeSize+1), ErrEnvelopeTooLarge},
		{"oversized garbage", fixedKey, DirCommand, strings.Repeat("!", MaxEnvelopeSize+4), ErrEnvelopeTooLarge},
	}
	// Stray bits in the last character: the same bytes, non-canonically.
	if n := len(raw) % 3; n != 0 {
		last := blob[len(blob)-1]
		alt := strings.IndexByte(urlAlphabet, last) ^ 1 // low bit is never data
		cases = append(cases, struct {
			name string
			key  []byte
			dir  Direction
			blob string
			want error
		}{"non-zero trailing bits", fixedKey, DirCommand, blob[:len(blob)-1] + urlAlphabet[alt:alt+1], ErrEnvelopeBase64})
	} else {
		t.Fatalf("test blob has %d bytes, a multiple of 3; pick a plaintext with trailing bits", len(raw))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Open(c.key, c.dir, c.blob)
			if !errors.Is(err, c.want) {
				t.Fatalf("Open err = %v, want %v", err, c.want)
			}
			if got != nil {
				t.Errorf("Open returned %q with an error", got)
			}
			if !strings.HasPrefix(err.Error(), "codec: ") {
				t.Errorf("error %q lacks the codec: prefix", err)
			}
		})
	}

	// Flipping any bit of nonce, ciphertext or tag fails authentication.
	for i := range raw {
		for bit := range 8 {
			mut := bytes.Clone(raw)
			mut[i] ^= 1 << bit
			if _, err := Open(fixedKey, DirCommand, b64.EncodeToString(mut)); !errors.Is(err, ErrEnvelopeAuth) {
				t.Fatalf("byte %d bit %d flipped: err = %v, want ErrEnvelopeAuth", i, bit, err)
			}
		}
	}
}

const urlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestSealErrors(t *testing.T) {
	r := seededReader(3)
	if _, err := Seal(fixedKey, "", []byte("x"), r); !errors.Is(err, ErrUnknownDirection) {
		t.Errorf("empty direction: err = %v", err)
	}
	if _, err := Seal(fixedKey[:31], DirQuery, []byte("x"), r); !errors.Is(err, ErrSessionKeySize) {
		t.Errorf("31-byte key: err = %v", err)
	}
	if _, err := Seal(fixedKey, DirQuery, []byte("x"), bytes.NewReader(make([]byte, NonceSize-1))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short randomness: err = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := Seal(fixedKey, DirQuery, []byte("x"), bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Errorf("no randomness: err = %v, want io.EOF", err)
	}

	// The largest plaintext fills MaxEnvelopeSize exactly and opens; one
	// more byte is refused.
	big := make([]byte, MaxPlaintextSize+1)
	if _, err := Seal(fixedKey, DirQueryResponse, big, r); !errors.Is(err, ErrEnvelopeTooLarge) {
		t.Errorf("plaintext of %d bytes: err = %v, want ErrEnvelopeTooLarge", len(big), err)
	}
	blob, err := Seal(fixedKey, DirQueryResponse, big[:MaxPlaintextSize], r)
	if err != nil {
		t.Fatal(err)
	}
	if len(blob) != MaxEnvelopeSize {
		t.Errorf("largest blob is %d characters, want MaxEnvelopeSize %d", len(blob), MaxEnvelopeSize)
	}
	if got, err := Open(fixedKey, DirQueryResponse, blob); err != nil || len(got) != MaxPlaintextSize {
		t.Errorf("Open of the largest blob: %d bytes, err %v", len(got), err)
	}
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey(seededReader(4))
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey(seededReader(4))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Equal(b) {
		t.Error("GenerateKey is not a function of its reader")
	}
	if _, err := GenerateKey(bytes.NewReader(make([]byte, 31))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("31 bytes of randomness: err = %v, want io.ErrUnexpectedEOF", err)
	}
	enc := EncodePublicKey(a.PublicKey())
	if len(enc) != 43 {
		t.Errorf("encoded public key %q has %d characters, want 43", enc, len(enc))
	}
	pub, err := DecodePublicKey(enc)
	if err != nil || !pub.Equal(a.PublicKey()) {
		t.Errorf("DecodePublicKey(EncodePublicKey(k)) = %v, %v", pub, err)
	}
}

func TestDecodePublicKeyErrors(t *testing.T) {
	good := b64.EncodeToString(bytes.Repeat([]byte{9}, 32))
	for _, c := range []struct {
		name, in, mention string
	}{
		{"empty", "", "0 bytes"},
		{"31 bytes", b64.EncodeToString(make([]byte, 31)), "31 bytes"},
		{"33 bytes", b64.EncodeToString(make([]byte, 33)), "33 bytes"},
		{"64 bytes", b64.EncodeToString(make([]byte, 64)), "64 bytes"},
		{"bad characters", "not!!valid!!base64!!", "base64"},
		{"padded", base64.URLEncoding.EncodeToString(make([]byte, 32)), "base64"},
		{"standard alphabet", base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 32)), "base64"},
		{"line break", good[:20] + "\n" + good[20:], "base64"},
		{"trailing bits", good[:42] + "B", "base64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodePublicKey(c.in)
			if !errors.Is(err, ErrPublicKey) {
				t.Fatalf("err = %v, want ErrPublicKey", err)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}
}

func TestDeriveSessionKeyErrors(t *testing.T) {
	priv, err := GenerateKey(seededReader(5))
	if err != nil {
		t.Fatal(err)
	}
	// Low-order points (RFC 7748 §7; Bernstein's curve25519 list): u = 0,
	// u = 1, and a point of order 8.
	for _, u := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	} {
		for _, role := range []Role{RoleHub, RoleClient} {
			_, err := DeriveSessionKey(role, priv, x25519Public(t, unhex(t, u)))
			if !errors.Is(err, ErrZeroSharedSecret) {
				t.Errorf("peer %s as %v: err = %v, want ErrZeroSharedSecret", u, role, err)
			}
		}
	}
	if _, err := DeriveSessionKey(0, priv, priv.PublicKey()); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("role 0: err = %v, want ErrUnknownRole", err)
	}
}

// channel returns a client Sealer and the hub Opener that receives from it.
func channel(t *testing.T) (*Sealer, *Opener) {
	t.Helper()
	s, err := NewSealer(fixedKey, RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(fixedKey, RoleHub)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

func seal(t *testing.T, s *Sealer, dir Direction, pt string) []byte {
	t.Helper()
	blob, err := s.Seal(dir, []byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

func TestReplay(t *testing.T) {
	s, o := channel(t)
	e0 := seal(t, s, DirCommand, "zero")
	e1 := seal(t, s, DirQuery, "one")
	e2 := seal(t, s, DirCommand, "two")
	e3 := seal(t, s, DirCommand, "three")

	open := func(dir Direction, blob []byte, want string, wantErr error) {
		t.Helper()
		got, err := o.Open(dir, blob)
		if !errors.Is(err, wantErr) {
			t.Fatalf("Open err = %v, want %v", err, wantErr)
		}
		if err == nil && string(got) != want {
			t.Fatalf("Open = %q, want %q", got, want)
		}
	}
	open(DirCommand, e0, "zero", nil)
	open(DirCommand, e0, "", ErrEnvelopeReplayed) // same counter twice
	open(DirCommand, e2, "two", nil)              // a gap is fine
	open(DirQuery, e1, "", ErrEnvelopeReplayed)   // older counter, arrived late
	open(DirCommand, e2, "", ErrEnvelopeReplayed)

	// A failed open changes nothing: e3 opens after a forgery and a wrong
	// direction were refused.
	raw := bytes.Clone(e3)
	raw[len(raw)-1] ^= 1
	open(DirCommand, raw, "", ErrEnvelopeAuth)
	open(DirQuery, e3, "", ErrEnvelopeAuth)
	open(DirCommand, e3, "three", nil)

	err := func() error { _, err := o.Open(DirCommand, e3); return err }()
	if err == nil || err.Error() != "codec: envelope replayed: counter 3, last accepted 3" {
		t.Errorf("replay error = %v", err)
	}
}

func TestChannelKeySeparation(t *testing.T) {
	s, _ := channel(t)
	blob := seal(t, s, DirCommand, "hello")

	// The sender's own Opener uses the other direction's key.
	own, err := NewOpener(fixedKey, RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.Open(DirCommand, blob); !errors.Is(err, ErrEnvelopeAuth) {
		t.Errorf("client opening its own envelope: err = %v, want ErrEnvelopeAuth", err)
	}
	// The Hikma envelope uses the session key itself: no cross-opening.
	if _, err := Open(fixedKey, DirCommand, b64.EncodeToString(blob)); !errors.Is(err, ErrEnvelopeAuth) {
		t.Errorf("Open of a channel envelope: err = %v, want ErrEnvelopeAuth", err)
	}
	hikma := mustSeal(t, fixedKey, DirCommand, "hello", bytes.NewReader(make([]byte, NonceSize)))
	hub, err := NewOpener(fixedKey, RoleHub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Open(DirCommand, mustDecodeB64(t, hikma)); !errors.Is(err, ErrEnvelopeAuth) {
		t.Errorf("Opener of a Hikma envelope with a counter-shaped nonce: err = %v, want ErrEnvelopeAuth", err)
	}
	// A nonce that is not four zero bytes and a counter is refused.
	raw := bytes.Clone(blob)
	raw[0] = 1
	if _, err := hub.Open(DirCommand, raw); !errors.Is(err, ErrEnvelopeAuth) {
		t.Errorf("non-zero nonce prefix: err = %v, want ErrEnvelopeAuth", err)
	}
}

func TestChannelErrors(t *testing.T) {
	if _, err := NewSealer(fixedKey[:16], RoleClient); !errors.Is(err, ErrSessionKeySize) {
		t.Errorf("NewSealer with a 16-byte key: err = %v", err)
	}
	if _, err := NewOpener(fixedKey, Role(3)); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("NewOpener with Role(3): err = %v", err)
	}
	s, o := channel(t)
	if _, err := s.Seal("bogus", nil); !errors.Is(err, ErrUnknownDirection) {
		t.Errorf("Seal bogus direction: err = %v", err)
	}
	if _, err := s.Seal(DirCommand, make([]byte, MaxPlaintextSize+1)); !errors.Is(err, ErrEnvelopeTooLarge) {
		t.Errorf("Seal oversized: err = %v", err)
	}
	if s.next != 0 {
		t.Errorf("failed seals advanced the counter to %d", s.next)
	}
	if _, err := o.Open(DirCommand, make([]byte, MaxSealedSize+1)); !errors.Is(err, ErrEnvelopeTooLarge) {
		t.Errorf("Open oversized: err = %v", err)
	}
	if _, err := o.Open("bogus", make([]byte, 40)); !errors.Is(err, ErrUnknownDirection) {
		t.Errorf("Open bogus direction: err = %v", err)
	}
	if _, err := o.Open(DirCommand, make([]byte, NonceSize+TagSize-1)); !errors.Is(err, ErrEnvelopeTruncated) {
		t.Errorf("Open truncated: err = %v", err)
	}

	// The last counter, 2^64-2, seals and opens; then the Sealer stops.
	s.next = ^uint64(0) - 1
	last := seal(t, s, DirCommand, "last")
	if _, err := s.Seal(DirCommand, nil); !errors.Is(err, ErrCounterExhausted) {
		t.Errorf("Seal after the last counter: err = %v, want ErrCounterExhausted", err)
	}
	if got, err := o.Open(DirCommand, last); err != nil || string(got) != "last" {
		t.Errorf("Open of the last counter = %q, %v", got, err)
	}
}

// fuzzSeals are real envelopes under fixedKey, by blob: Hikma ones (base64) sealed
// with Seal and native ones (raw bytes as a string) from a client Sealer (counters start at 0, so
// a fresh hub Opener accepts each of them).
type fuzzSeal struct {
	dir       Direction
	plaintext string
}

func fuzzSeals(f *testing.F) (hikma, native map[string]fuzzSeal) {
	hikma, native = map[string]fuzzSeal{}, map[string]fuzzSeal{}
	r := seededReader(6)
	for i, dir := range allDirections {
		pt := strings.Repeat("p", i*7)
		blob, err := Seal(fixedKey, dir, []byte(pt), r)
		if err != nil {
			f.Fatal(err)
		}
		hikma[blob] = fuzzSeal{dir, pt}
		s, err := NewSealer(fixedKey, RoleClient)
		if err != nil {
			f.Fatal(err)
		}
		sealed, err := s.Seal(dir, []byte(pt))
		if err != nil {
			f.Fatal(err)
		}
		native[string(sealed)] = fuzzSeal{dir, pt}
	}
	return hikma, native
}

var envelopeErrors = []error{
	ErrUnknownDirection, ErrEnvelopeTooLarge, ErrEnvelopeBase64,
	ErrEnvelopeTruncated, ErrEnvelopeAuth, ErrEnvelopeReplayed,
}

func isEnvelopeError(err error) bool {
	for _, e := range envelopeErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzOpen: no blob panics Open or Opener.Open, every failure is an
// envelope sentinel, and only a real seal, under its own direction,
// opens, to its own plaintext.
func FuzzOpen(f *testing.F) {
	hikma, native := fuzzSeals(f)
	for blob := range hikma {
		for d := range 5 {
			f.Add(blob, uint8(d))
		}
	}
	for blob := range native {
		f.Add(blob, uint8(0))
		f.Add(blob[:len(blob)-1], uint8(1))
	}
	for _, s := range []string{"", "A", "AA", "AAAA", "not!!valid", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", "\n", strings.Repeat("_", 38)} {
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, blob string, d uint8) {
		dir := Direction("bogus")
		if int(d)%5 < len(allDirections) {
			dir = allDirections[int(d)%5]
		}
		check := func(what string, got []byte, err error, known map[string]fuzzSeal) {
			if err != nil {
				if !isEnvelopeError(err) {
					t.Fatalf("%s(%q, %q): unexpected error %v", what, dir, blob, err)
				}
				return
			}
			want, ok := known[blob]
			if !ok || want.dir != dir || string(got) != want.plaintext {
				t.Fatalf("%s(%q, %q) = %q: opened something that was not sealed so", what, dir, blob, got)
			}
		}
		got, err := Open(fixedKey, dir, blob)
		check("Open", got, err, hikma)
		o, err := NewOpener(fixedKey, RoleHub)
		if err != nil {
			t.Fatal(err)
		}
		got, err = o.Open(dir, []byte(blob))
		check("Opener.Open", got, err, native)
	})
}

// FuzzDecodePublicKey: no input panics; every failure wraps ErrPublicKey;
// every accepted input is the canonical encoding of its key.
func FuzzDecodePublicKey(f *testing.F) {
	v := loadVectors(f)
	for _, s := range []string{
		v.HubPublic, v.ClientPublic, "", "A", strings.Repeat("A", 43), strings.Repeat("A", 44),
		strings.Repeat("_", 43), base64.URLEncoding.EncodeToString(make([]byte, 32)),
		"not!!valid!!base64!!", v.HubPublic[:42] + "B", v.HubPublic + "\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := DecodePublicKey(s)
		if err != nil {
			if !errors.Is(err, ErrPublicKey) {
				t.Fatalf("DecodePublicKey(%q): error %v does not wrap ErrPublicKey", s, err)
			}
			return
		}
		if got := EncodePublicKey(pub); got != s {
			t.Fatalf("DecodePublicKey(%q) accepted a non-canonical encoding of %s", s, got)
		}
	})
}

func mustDecodeB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := decodeB64(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
