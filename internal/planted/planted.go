// Package planted holds deliberately wrong sync rules, planted by test
// switches (bin/simulate --break-merge, bin/node's CLINICSYNC_TEST_BREAK)
// to show that the checks catch them. Nothing else may use it.
package planted

import (
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/fsm"
)

// Merge is a wrong pull merge: the pulled row wins even over columns
// changed locally and not pushed yet, so those local edits are lost.
func Merge(cur *codec.Record, in codec.Change) (codec.Outcome, error) {
	if cur == nil || cur.Deleted || len(cur.Changed) == 0 || in.Delete {
		return fsm.ApplyPulled(cur, in)
	}
	forget := *cur
	forget.Changed = nil
	out, err := fsm.ApplyPulled(&forget, in)
	if out.Op == codec.Write {
		out.Record.Changed = cur.Changed
	}
	return out, err
}
