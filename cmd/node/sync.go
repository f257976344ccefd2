package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// syncFlags are the flags of the commands that run a sync.
type syncFlags struct {
	*flags
	peer     *string
	timeout  *time.Duration
	pageSize *int
}

func (e *env) syncFlags(name string) syncFlags {
	f := e.flags(name)
	return syncFlags{f,
		f.String("peer", "", "the peer `id` to sync with (default: the selected one, else the first active hub, else cloud)"),
		f.Duration("timeout", 10*time.Minute, "give up waiting after this long"),
		f.Int("page-size", actors.DefaultPageSize, "records to ask for per pulled page (the peer may serve fewer)")}
}

// cmdSync: node sync --data DIR [--peer ID]
func cmdSync(e *env, name string, args []string) error {
	f := e.syncFlags(name)
	err := f.parseAll(args)
	if err != nil {
		return err
	}
	return f.run(nil, actors.SyncRequest{PeerID: *f.peer, Trigger: actors.Manual})
}

// cmdForce: node force-upload|force-download --data DIR --since TIME [--peer ID]
func cmdForce(e *env, name string, args []string) error {
	f := e.syncFlags(name)
	since := f.String("since", "", "re-send (upload) or re-pull (download) rows since this `time`: epoch ms, RFC 3339 or YYYY-MM-DD")
	err := f.parseAll(args, "since")
	if err != nil {
		return err
	}
	v, err := codec.ParseText(schema.Column{Name: "since", Type: schema.Timestamp}, *since)
	ms, ok := v.Int64()
	if err != nil || !ok || ms < 0 {
		return usageErr(name, "--since %q: want epoch ms, RFC 3339 or YYYY-MM-DD", *since)
	}
	trigger := actors.ForceUpload
	if name == "force-download" {
		trigger = actors.ForceDownload
	}
	return f.run(nil, actors.SyncRequest{PeerID: *f.peer, Trigger: trigger, Since: ms})
}

// cmdLogin: node login --data DIR --email E --password P [--peer ID] [--no-sync]
func cmdLogin(e *env, name string, args []string) error {
	f := e.syncFlags(name)
	email := f.String("email", "", "the user's email")
	password := f.String("password", "", "the user's password")
	noSync := f.Bool("no-sync", false, "check the credentials with the peer by one read and keep them, without a sync")
	err := f.parseAll(args, "email", "password")
	if err != nil {
		return err
	}
	login := func(ctx context.Context, n *actors.Node) (actors.Result, error) {
		if k := n.Info().Kind; k != actors.KindMobile {
			return actors.Result{}, fmt.Errorf("a %s node does not sign in: a hub reaches the cloud with its device key (node peer add --api-key)", k)
		}
		if *noSync {
			return n.LoginNoSync(ctx, *email, *password, *f.peer)
		}
		return n.Login(ctx, *email, *password, *f.peer)
	}
	return f.run(login, actors.SyncRequest{})
}

// run opens the node with its sync engine running (HTTP transports),
// runs one sync (or do, when given) and reports it: outcome, pulled
// and pushed, and why it was skipped or failed. A failed sync exits 1
// with the reason on stderr (and, with --json, the report on stdout).
// While it runs, its progress shows on stdout when that is a terminal
// (without --json), else on stderr in plain lines (syncProgress).
// progress returns the display of a sync's progress this command's
// outputs call for.
func (f syncFlags) progress() *syncProgress {
	if f.env.outTerminal && !f.json {
		return newSyncProgress(f.env.out, true, time.Now)
	}
	return newSyncProgress(f.env.errOut, false, time.Now)
}

func (f syncFlags) run(do func(context.Context, *actors.Node) (actors.Result, error), req actors.SyncRequest) error {
	out := f.env.out
	if *f.pageSize <= 0 {
		return usageErr(f.name, "--page-size %d: want a number of records > 0", *f.pageSize)
	}
	req.PageSize = *f.pageSize
	var res actors.Result
	err := f.withEngine(func(n *actors.Node) error {
		if n.Info().Kind == actors.KindCloud {
			return errors.New("a cloud node is the root and syncs with no peer")
		}
		ctx, cancel := context.WithTimeout(f.env.ctx, *f.timeout)
		defer cancel()
		bar := f.progress()
		unsubscribe := n.Subscribe(bar.observe)
		var err error
		if do != nil {
			res, err = do(ctx, n)
		} else {
			res, err = n.Sync(ctx, req)
		}
		unsubscribe()
		bar.finish(res)
		return err
	})
	if err != nil {
		return err
	}
	var msg *string
	if res.Outcome != actors.OutcomeOK {
		m := res.Message
		if res.Err != nil && !strings.Contains(m, res.Err.Error()) && !errors.Is(res.Err, actors.ErrSyncInProgress) {
			m += " (" + res.Err.Error() + ")"
		}
		msg = &m
	}
	if f.json {
		err = writeJSON(out, struct {
			Outcome string  `json:"outcome"`
			Pulled  int     `json:"pulled"`
			Pushed  int     `json:"pushed"`
			Error   *string `json:"error"`
		}{res.Outcome, res.Pulled, res.Pushed, msg})
	} else if res.Outcome != actors.OutcomeError {
		pairs := [][2]string{{"outcome", res.Outcome}, {"peer", res.Peer},
			{"pulled", strconv.Itoa(res.Pulled)}, {"pushed", strconv.Itoa(res.Pushed)}}
		for _, rj := range res.Rejected {
			pairs = append(pairs, [2]string{"rejected", rj.GetTable() + "/" + rj.GetId() + ": " + rj.GetReason()})
		}
		if msg != nil {
			pairs = append(pairs, [2]string{"message", *msg})
		}
		err = writePairs(out, pairs)
	}
	if err != nil {
		return err
	}
	if res.Outcome == actors.OutcomeError {
		return errors.New(*msg)
	}
	return nil
}
