package kv

import (
	"encoding/binary"
	"maps"
	"slices"
	"time"

	"github.com/clinicsync/clinicsync/codec"
)

// DefaultMaxDrift bounds how far this node's clock may run ahead of its
// upstream's before it is corrected: beyond it, local edits are dated by
// the upstream's time (see Store.ClampPending and Batch.UpstreamTime),
// so a device whose clock is a day fast does not win every conflict for
// a day.
const DefaultMaxDrift = 10 * time.Minute

// The hybrid logical clock, in the meta bucket. Each stamp is wall (8
// bytes) and counter (4 bytes).
var (
	kIssued = []byte("hlc")        // the last version issued here
	kSeen   = []byte("hlc-seen")   // the highest version received
	kOffset = []byte("hlc-offset") // ms this node's clock runs ahead of its upstream's (0 within MaxDrift)
)

type stampT struct {
	wall    int64
	counter uint32
}

func (a stampT) less(b stampT) bool {
	return a.wall < b.wall || a.wall == b.wall && a.counter < b.counter
}

func stampOf(v codec.Version) stampT { return stampT{v.Wall, v.Counter} }

func readStamp(tx Tx, key []byte) (stampT, error) {
	b, err := tx.Bucket(bMeta)
	if err != nil {
		return stampT{}, err
	}
	v := b.Get(key)
	if len(v) != 12 {
		return stampT{}, nil
	}
	return stampT{int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint32(v[8:])}, nil
}

func writeStamp(tx Tx, key []byte, s stampT) error {
	b, err := tx.Bucket(bMeta)
	if err != nil {
		return err
	}
	v := binary.BigEndian.AppendUint64(nil, uint64(s.wall))
	return b.Put(key, binary.BigEndian.AppendUint32(v, s.counter))
}

// stamp issues the version of a local edit: the hybrid logical clock
// moved to max(last issued, highest seen, now), persisted in the same
// transaction, so a version is never reissued across restarts or clocks
// set back, and an edit beats every version this node received before
// it. now is the clock less the learned offset to the upstream.
func (s *Store) stamp(tx Tx) (codec.Version, error) {
	last, err := readStamp(tx, kIssued)
	if err != nil {
		return codec.Version{}, err
	}
	seen, err := readStamp(tx, kSeen)
	if err != nil {
		return codec.Version{}, err
	}
	off, err := readStamp(tx, kOffset)
	if err != nil {
		return codec.Version{}, err
	}
	if last.less(seen) {
		last = seen
	}
	if now := s.opts.Clock.Now().UnixMilli() - off.wall; now > last.wall {
		last = stampT{now, 0}
	} else {
		last.counter++
	}
	// A stamp within the clamp floor's millisecond moves the floor, so
	// that a later clamp never re-dates an edit to a version issued here
	// before: one version, one edit.
	floor, err := readStamp(tx, kClampFloor)
	if err != nil {
		return codec.Version{}, err
	}
	if last.wall == floor.wall && floor.less(last) {
		if err := writeStamp(tx, kClampFloor, last); err != nil {
			return codec.Version{}, err
		}
	}
	return codec.Version{Wall: last.wall, Counter: last.counter, Node: s.opts.NodeID}, writeStamp(tx, kIssued, last)
}

// Now is the node's time for dating and bounding versions (ms): the
// clock, but never behind the newest cursor issued nor the versions this
// node issued or received, so a clock set back neither dates a client's
// edit before one already served nor makes a version this node already
// holds look like one from the future.
func (s *Store) Now() (int64, error) {
	now := s.opts.Clock.Now().UnixMilli()
	err := s.be.View(func(tx Tx) error {
		c, err := lastCursor(tx)
		if err != nil {
			return err
		}
		now = max(now, c)
		for _, key := range [][]byte{kIssued, kSeen} {
			st, err := readStamp(tx, key)
			if err != nil {
				return err
			}
			now = max(now, st.wall)
		}
		return nil
	})
	return now, err
}

// observe advances the clock past the versions of received rows, so that
// an edit made here afterwards beats every one of them.
func observe(tx Tx, rows []Change) error {
	seen, err := readStamp(tx, kSeen)
	if err != nil {
		return err
	}
	moved := false
	for _, c := range rows {
		for _, v := range c.Versions {
			if seen.less(stampOf(v)) {
				seen, moved = stampOf(v), true
			}
		}
	}
	if !moved {
		return nil
	}
	return writeStamp(tx, kSeen, seen)
}

// learnOffset records how far this node's clock runs ahead of its
// upstream's, whose time was upstream (a pull's timestamp): the offset
// when it is beyond DefaultMaxDrift, else 0. Later edits are dated by
// the corrected clock.
func (s *Store) learnOffset(tx Tx, upstream int64) error {
	off := s.opts.Clock.Now().UnixMilli() - upstream
	if off <= DefaultMaxDrift.Milliseconds() {
		off = 0
	}
	return writeStamp(tx, kOffset, stampT{wall: off})
}

// ClampPending bounds the versions of this node's own unpushed edits to
// limit (ms; the upstream's time plus DefaultMaxDrift) before a push: an
// edit stamped by a clock far ahead is dated anew, after every own
// version a push may have sent before and every version received, and
// in the same order as the originals; an edit that went through a clamp
// before keeps its version (a push may have carried it already). So
// each edit keeps one version on every node, and a later edit still
// beats an earlier one. Versions of other nodes' edits (relayed) pass
// on unchanged. It returns how many column versions changed.
func (s *Store) ClampPending(limit int64) (n int, err error) {
	err = s.be.Update(func(tx Tx) error {
		n = 0
		pi, err := tx.Bucket(bPending)
		if err != nil {
			return err
		}
		// Clamped edits go after every own version that may have left in
		// a push before (the floor) and every version received (an edit
		// made after receiving a version must beat it). A version at or
		// below the floor went through a clamp already (it may have left
		// with a lost answer): it is never re-dated.
		floor, err := readStamp(tx, kClampFloor)
		if err != nil {
			return err
		}
		ahead := func(v codec.Version) bool {
			return v.Node == s.opts.NodeID && v.Wall > limit && floor.less(stampOf(v))
		}
		var fix [][]byte // pending index keys of the rows to clamp
		var olds []stampT
		var kept stampT // the highest own pending version within the limit
		err = pi.Ascend(nil, func(k, _ []byte) (bool, error) {
			r, err := indexed(tx, bPending, k, decodeVersions) // columns unread
			if err != nil {
				return false, err
			}
			found := false
			for col, v := range r.Versions {
				switch {
				case !unpushed(r, col):
				case ahead(v):
					olds, found = append(olds, stampOf(v)), true
				case v.Node == s.opts.NodeID:
					kept = later(kept, stampOf(v))
				}
			}
			if found {
				fix = append(fix, slices.Clone(k))
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		seen, err := readStamp(tx, kSeen)
		if err != nil {
			return err
		}
		if len(fix) == 0 {
			// Nothing to clamp: the floor still moves past what this push
			// sends.
			return writeStamp(tx, kClampFloor, later(floor, kept))
		}
		floor = later(later(floor, seen), later(kept, stampT{limit, 0}))
		issued, err := readStamp(tx, kIssued)
		if err != nil {
			return err
		}
		if issued.wall == floor.wall {
			floor = later(floor, issued) // never a version issued here before
		}
		slices.SortFunc(olds, func(a, b stampT) int {
			if a.less(b) {
				return -1
			} else if b.less(a) {
				return 1
			}
			return 0
		})
		olds = slices.Compact(olds)
		renamed := make(map[stampT]stampT, len(olds))
		for _, o := range olds {
			floor.counter++
			renamed[o] = floor
		}
		for _, k := range fix {
			old, err := indexed(tx, bPending, k, decodeRecord)
			if err != nil {
				return err
			}
			r := old
			r.Versions = maps.Clone(old.Versions)
			for col, v := range r.Versions {
				if unpushed(r, col) && ahead(v) {
					nv := renamed[stampOf(v)]
					v.Wall, v.Counter = nv.wall, nv.counter
					r.Versions[col] = v
					n++
				}
			}
			if err := s.put(tx, &old, &r); err != nil {
				return err
			}
		}
		// Edits from now on continue after the clamped ones, not after
		// the far-ahead originals.
		if err := writeStamp(tx, kClampFloor, floor); err != nil {
			return err
		}
		return writeStamp(tx, kIssued, floor)
	})
	return n, err
}

// unpushed reports whether a pending row's column holds an edit not yet
// pushed: every column of a created row, the _changed ones of an
// updated row. Its other columns went upstream before (or came from
// it), with their versions.
func unpushed(r Record, col string) bool {
	return r.Status == Created || slices.Contains(r.Changed, col)
}

// later returns the later of two stamps.
func later(a, b stampT) stampT {
	if a.less(b) {
		return b
	}
	return a
}

var kClampFloor = []byte("hlc-clamped") // the highest own version ClampPending let go to a push
