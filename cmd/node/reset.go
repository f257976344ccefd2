package main

import (
	"fmt"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
)

// cmdReset: node reset --data DIR
func cmdReset(e *env, name string, args []string) error {
	f := e.flags(name)
	if err := f.parseAll(args); err != nil {
		return err
	}
	var res actors.ResetResult
	var state fsm.State
	err := f.withNode(func(n *actors.Node) (err error) {
		if res, err = n.Reset(); err != nil {
			return err
		}
		state = n.State()
		return nil
	})
	if err != nil {
		return err
	}
	if f.json {
		type cleared struct {
			Peer   string `json:"peer"`
			Pulled int    `json:"pulled"`
		}
		var c *cleared
		if r := res.Cleared; r != nil {
			c = &cleared{r.Peer, r.Pulled}
		}
		return writeJSON(e.out, struct {
			State       string   `json:"state"`
			Was         string   `json:"was"`
			Served      bool     `json:"served"`
			ClearedPull *cleared `json:"cleared_pull_resume"` // null: none (or served)
		}{string(state), string(res.Was), res.Engine, c})
	}
	pairs := [][2]string{{"state", string(state)}}
	switch {
	case res.Engine && res.Was != fsm.Idle:
		pairs = append(pairs, [2]string{"reset", fmt.Sprintf("the sync in flight (%s) was abandoned; whoever asked for it gets an error", res.Was)})
	case res.Engine:
		pairs = append(pairs, [2]string{"reset", "no sync was running"})
	case res.Cleared != nil:
		pairs = append(pairs, [2]string{"reset", fmt.Sprintf("no sync runs (the node is not served); cleared the interrupted pull from %s (%d records pulled): the next sync pulls from the peer's cursor", res.Cleared.Peer, res.Cleared.Pulled)})
	default:
		pairs = append(pairs, [2]string{"reset", "no sync runs (the node is not served), and none was left in progress"})
	}
	return writePairs(e.out, pairs)
}
