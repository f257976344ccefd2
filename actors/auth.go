package actors

// Authentication of HTTP sync requests (reference hikma-sync.md §1.2,
// with the fixes of §8.9 and §9): Basic for users, Bearer device key
// together with peerType=sync_hub for hubs.

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// ErrUnauthorized: missing, malformed or wrong credentials (HTTP 401).
var ErrUnauthorized = errors.New("Unauthorized")

// ThrottledError: too many failed sign-ins from an address or for an
// account (HTTP 429); Wait is when to try again.
type ThrottledError struct {
	Wait time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins: try again in %s", e.Wait.Round(time.Second))
}

// HubPeerType is the peerType a hub sends with its device key.
const HubPeerType = kv.PeerHub

// Authenticator checks the credentials of an HTTP sync request against
// a store: its users (rows of the synced users table, with a bcrypt
// hashed_password) and its registered devices (hubs, with the sha256 of
// their API key).
//
// Credentials cost one bcrypt check per sync, not per page: a user's
// credentials that passed are remembered (by their sha256, never in
// clear) for CredentialTTL, and only while the user's row is unchanged,
// so a new password, a deleted user or another email takes effect at
// once. Users are found through an index by email kept from the users
// table's changes; device keys through the store's key index.
type Authenticator struct {
	Store *kv.Store
	// Clock dates remembered credentials (nil: the wall clock).
	Clock kv.Clock
	// Failures, when set, limits failed sign-ins, per client address
	// and per account: over it, a request is refused (ErrThrottled)
	// before any bcrypt, so guessing slows down and costs the server
	// little, while other callers go on. Remembered credentials are
	// never refused by it.
	Failures *RateLimiter

	mu       sync.Mutex
	users    map[string]userEntry    // by lower-case email (live users with a password)
	byID     map[string]string       // user id → its email in users
	seen     int64                   // users index: the cursor read up to
	verified map[[32]byte]verifiedAt // credentials that passed bcrypt
	// Bcrypts counts the bcrypt comparisons made (for benchmarks).
	Bcrypts atomic.Int64
}

// dummyHash is compared against when the email is unknown, so that an
// unknown email takes as long to refuse as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte("clinicsync: no such user"), BcryptCost)
	if err != nil {
		panic("actors: bcrypt of a constant failed: " + err.Error())
	}
	return h
})

// CredentialTTL is how long credentials that passed a bcrypt check are
// taken without another.
const CredentialTTL = 10 * time.Minute

type userEntry struct {
	id, hash string
}

type verifiedAt struct {
	user userEntry
	at   time.Time
}

// Authenticate returns who sent r, from client address addr:
//   - with peerType=sync_hub (query peerType or peer_type), only
//     "Authorization: Bearer <device key>" is accepted: the key's sha256
//     must name a registered, active device, which becomes a hub caller
//     scoped to the device's clinics. A user's Basic credentials can
//     never claim to be a hub.
//   - otherwise only "Authorization: Basic base64(email:password)" is
//     accepted: a live user (neither deleted nor is_deleted) whose
//     bcrypt hash matches. The caller is a device (not a hub), unscoped.
//
// Failures wrap ErrUnauthorized with the reason; a store failure is
// returned as is (a server error, not a refusal).
func (a *Authenticator) Authenticate(r *http.Request, addr string) (fsm.Caller, error) {
	c, err := a.authenticate(r, addr)
	if errors.Is(err, ErrUnauthorized) && a.Failures != nil {
		a.Failures.Allow("address:" + addr)
	}
	return c, err
}

// throttled refuses a client address or account over its failures.
func (a *Authenticator) throttled(keys ...string) error {
	if a.Failures == nil {
		return nil
	}
	for _, k := range keys {
		if ok, wait := a.Failures.Peek(k); !ok {
			return &ThrottledError{Wait: wait}
		}
	}
	return nil
}

func (a *Authenticator) authenticate(r *http.Request, addr string) (fsm.Caller, error) {
	q := r.URL.Query()
	peerType := q.Get("peerType")
	if peerType == "" {
		peerType = q.Get("peer_type")
	}
	header := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(strings.TrimSpace(header), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case header == "":
		return fsm.Caller{}, fmt.Errorf("%w: missing Authorization header", ErrUnauthorized)
	case peerType == HubPeerType:
		if !strings.EqualFold(scheme, "Bearer") || cred == "" {
			return fsm.Caller{}, fmt.Errorf("%w: peerType=sync_hub needs Authorization: Bearer <device key>", ErrUnauthorized)
		}
		return a.device(cred)
	case strings.EqualFold(scheme, "Basic"):
		return a.user(cred, addr)
	case strings.EqualFold(scheme, "Bearer"):
		return fsm.Caller{}, fmt.Errorf("%w: a Bearer device key is accepted only with peerType=sync_hub", ErrUnauthorized)
	}
	return fsm.Caller{}, fmt.Errorf("%w: Authorization scheme %q is not Basic or Bearer", ErrUnauthorized, scheme)
}

// DeviceKeyHash is how a device's API key is stored: its sha256.
func DeviceKeyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

func (a *Authenticator) device(key string) (fsm.Caller, error) {
	d, err := a.Store.DeviceByKeyHash(DeviceKeyHash(key))
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return fsm.Caller{}, fmt.Errorf("%w: invalid or revoked device key", ErrUnauthorized)
	case err != nil:
		return fsm.Caller{}, err
	case d.Status != kv.StatusActive:
		return fsm.Caller{}, fmt.Errorf("%w: invalid or revoked device key", ErrUnauthorized)
	}
	return fsm.Caller{ID: d.ID, Hub: true, Clinics: append([]string(nil), d.ClinicIDs...)}, nil
}

func (a *Authenticator) user(cred, addr string) (fsm.Caller, error) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return fsm.Caller{}, fmt.Errorf("%w: Basic credentials are not base64", ErrUnauthorized)
	}
	email, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return fsm.Caller{}, fmt.Errorf("%w: Basic credentials are not email:password", ErrUnauthorized)
	}
	email = strings.ToLower(strings.TrimSpace(email))
	u, err := a.lookup(email)
	if err != nil {
		return fsm.Caller{}, err
	}
	key := sha256.Sum256(raw)
	now := nowOf(a.Clock)
	a.mu.Lock()
	v, ok := a.verified[key]
	a.mu.Unlock()
	if ok && u.id != "" && v.user == u && now.Sub(v.at) < CredentialTTL {
		return fsm.Caller{ID: u.id}, nil
	}
	if err := a.throttled("address:"+addr, "account:"+email); err != nil {
		return fsm.Caller{}, err
	}
	a.Bcrypts.Add(1)
	hash := []byte(u.hash)
	if u.id == "" {
		hash = dummyHash()
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || u.id == "" {
		if a.Failures != nil {
			a.Failures.Allow("account:" + email)
		}
		return fsm.Caller{}, fmt.Errorf("%w: invalid credentials", ErrUnauthorized)
	}
	a.mu.Lock()
	if a.verified == nil || len(a.verified) >= maxVerified {
		a.verified = map[[32]byte]verifiedAt{} // forget all rather than grow without bound
	}
	a.verified[key] = verifiedAt{u, now}
	a.mu.Unlock()
	return fsm.Caller{ID: u.id}, nil
}

// maxVerified bounds the credentials remembered.
const maxVerified = 100_000

// lookup returns the live user with that email (compared in lower
// case) and a password hash, or a zero entry. The index is brought up
// to date first from the users changed since it was last read: a walk
// of the cursor index from there, not a scan of the users.
func (a *Authenticator) lookup(email string) (userEntry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users == nil {
		a.users, a.byID = map[string]userEntry{}, map[string]string{}
	}
	for {
		page, err := a.Store.TableChangesSince("users", a.seen, 0, 1000)
		if err != nil {
			return userEntry{}, err
		}
		for _, r := range page.Records {
			if old, ok := a.byID[r.ID]; ok {
				delete(a.users, old)
				delete(a.byID, r.ID)
			}
			if r.Deleted || r.Cols["is_deleted"].Bool {
				continue
			}
			e, h := r.Cols["email"], r.Cols["hashed_password"]
			if e.Kind != codec.KindString || h.Kind != codec.KindString || h.Str == "" {
				continue
			}
			key := strings.ToLower(e.Str)
			if _, taken := a.users[key]; taken {
				continue // two live users with one email: the first keeps it
			}
			a.users[key] = userEntry{id: r.ID, hash: h.Str}
			a.byID[r.ID] = key
		}
		a.seen = page.Next
		if !page.More {
			return a.users[email], nil
		}
	}
}
