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

	"golang.org/x/crypto/bcrypt"

	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
	"github.com/clinicsync/clinicsync/kv"
)

// ErrUnauthorized: missing, malformed or wrong credentials (HTTP 401).
var ErrUnauthorized = errors.New("Unauthorized")

// HubPeerType is the peerType a hub sends with its device key.
const HubPeerType = kv.PeerHub

// Authenticator checks the credentials of an HTTP sync request against
// a store: its users (rows of the synced users table, with a bcrypt
// hashed_password) and its registered devices (hubs, with the sha256 of
// their API key).
type Authenticator struct {
	Store *kv.Store
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

// Authenticate returns who sent r:
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
func (a *Authenticator) Authenticate(r *http.Request) (fsm.Caller, error) {
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
		return a.user(cred)
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

func (a *Authenticator) user(cred string) (fsm.Caller, error) {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return fsm.Caller{}, fmt.Errorf("%w: Basic credentials are not base64", ErrUnauthorized)
	}
	email, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return fsm.Caller{}, fmt.Errorf("%w: Basic credentials are not email:password", ErrUnauthorized)
	}
	id, hash, err := findUser(a.Store, strings.ToLower(strings.TrimSpace(email)))
	if err != nil {
		return fsm.Caller{}, err
	}
	if id == "" {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return fsm.Caller{}, fmt.Errorf("%w: invalid credentials", ErrUnauthorized)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return fsm.Caller{}, fmt.Errorf("%w: invalid credentials", ErrUnauthorized)
	}
	return fsm.Caller{ID: id}, nil
}

// findUser returns the id and password hash of the live user with that
// email (compared in lower case), or "" when there is none. A user
// without a password hash cannot sign in.
func findUser(st *kv.Store, email string) (id string, hash []byte, err error) {
	err = st.Rows("users", func(r kv.Record) error {
		if id != "" || r.Deleted || r.Cols["is_deleted"].Bool {
			return nil
		}
		e, h := r.Cols["email"], r.Cols["hashed_password"]
		if e.Kind == codec.KindString && strings.ToLower(e.Str) == email && h.Kind == codec.KindString && h.Str != "" {
			id, hash = r.ID, []byte(h.Str)
		}
		return nil
	})
	return id, hash, err
}
