package codec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/codec/schema"
	pb "github.com/clinicsync/clinicsync/proto"
)

// Version orders the edits of one column: a hybrid logical clock stamp
// issued where the edit was made. Versions compare by wall time, then
// counter, then node id; the higher one is the newer edit and an equal
// one is the same edit. The zero Version is older than every edit (a
// column nobody versioned).
type Version struct {
	Wall    int64  // ms
	Counter uint32 // orders edits within one Wall
	Node    string // the node (or JSON client) that made the edit
}

// Compare returns -1, 0 or +1 as v is older than, the same as, or newer
// than o.
func (v Version) Compare(o Version) int {
	if c := cmp.Compare(v.Wall, o.Wall); c != 0 {
		return c
	}
	if c := cmp.Compare(v.Counter, o.Counter); c != 0 {
		return c
	}
	return strings.Compare(v.Node, o.Node)
}

// IsZero reports whether v is the zero Version.
func (v Version) IsZero() bool { return v == Version{} }

func (v Version) String() string { return fmt.Sprintf("%d.%d@%s", v.Wall, v.Counter, v.Node) }

// Newer reports whether value a at version va beats value b at version
// vb: the higher version wins; two different values at one version (two
// replicas that versioned an old row the same way) are ordered by their
// rendering, so that every replica picks the same one.
func Newer(a Value, va Version, b Value, vb Version) bool {
	if c := va.Compare(vb); c != 0 {
		return c > 0
	}
	return !a.Equal(b) && a.String() > b.String()
}

// BaseVersions returns r's versions with every column that has none
// given {updated_at (0 if none), 0, ""}: how a row from before versions,
// or from a peer that sends none, is dated. Every replica dates a row
// the same way, and any edit made with versions is newer.
func BaseVersions(r Row) map[string]Version {
	base, _ := r.Cols["updated_at"].Int64()
	out := make(map[string]Version, len(r.Cols))
	for col := range r.Cols {
		if v, ok := r.Versions[col]; ok {
			out[col] = v
		} else {
			out[col] = Version{Wall: max(base, 0)}
		}
	}
	return out
}

// Conflict is a column value that lost to another writer's newer edit,
// as a conflict log keeps it.
type Conflict struct {
	Table, ID, Column string
	Value             Value   // the losing value
	Version           Version // its version
	Winner            Version // the version that beat it
	At                int64   // ms, when this node decided
}

func (c Conflict) String() string {
	return fmt.Sprintf("%s/%s.%s=%s %s lost to %s", c.Table, c.ID, c.Column, c.Value, c.Version, c.Winner)
}

// VersionsToProto encodes a row's column versions as groups of columns
// sharing one version (a created row is one group), sorted by version.
func VersionsToProto(vs map[string]Version) []*pb.VersionGroup {
	if len(vs) == 0 {
		return nil
	}
	groups := map[Version][]string{}
	for col, v := range vs {
		groups[v] = append(groups[v], col)
	}
	keys := make([]Version, 0, len(groups))
	for v := range groups {
		keys = append(keys, v)
	}
	slices.SortFunc(keys, Version.Compare)
	out := make([]*pb.VersionGroup, len(keys))
	for i, v := range keys {
		cols := groups[v]
		slices.Sort(cols)
		out[i] = &pb.VersionGroup{WallMs: v.Wall, Counter: v.Counter, Node: v.Node, Columns: cols}
	}
	return out
}

// VersionsFromProto decodes version groups. A column named twice, a
// negative wall time or an invalid column name is refused.
func VersionsFromProto(groups []*pb.VersionGroup) (map[string]Version, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	out := map[string]Version{}
	for _, g := range groups {
		if g.GetWallMs() < 0 {
			return nil, fmt.Errorf("%w: version wall time %d is negative", ErrInvalidVersion, g.GetWallMs())
		}
		if len(g.GetNode()) > 128 {
			return nil, fmt.Errorf("%w: version node id is %d bytes", ErrInvalidVersion, len(g.GetNode()))
		}
		v := Version{Wall: g.GetWallMs(), Counter: g.GetCounter(), Node: g.GetNode()}
		for _, col := range g.GetColumns() {
			if !schema.ValidName(col) {
				return nil, fmt.Errorf("%w: version of column %q", ErrInvalidColumn, col)
			}
			if _, dup := out[col]; dup {
				return nil, fmt.Errorf("%w: column %s has two versions", ErrInvalidVersion, col)
			}
			out[col] = v
		}
	}
	return out, nil
}
