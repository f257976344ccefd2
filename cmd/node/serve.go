package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/fsm"
)

// serveContext is the context serve runs in: it ends on SIGINT or
// SIGTERM (tests swap it for one they cancel).
var serveContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// serveLog is where serve's request log goes.
var serveLog io.Writer = os.Stderr

// cmdServe: node serve --data DIR [--http ADDR] [--push-policy merge|strict]
// [--rate-limit N] [--trust-forwarded-for] [--max-body BYTES] [--page-size N]
func cmdServe(name string, args []string, out io.Writer) error {
	f := newFlags(name)
	addr := f.String("http", "127.0.0.1:8080", "`address` to serve /api/v2/sync on (host:port; port 0 picks one)")
	policy := f.String("push-policy", "merge", "merge (per-column merge of concurrent edits) or strict (409, WatermelonDB's rule)")
	rate := f.Int("rate-limit", actors.DefaultRateLimit, "sync requests per minute per client address (0: no limit)")
	trustFF := f.Bool("trust-forwarded-for", false, "rate limit by the first X-Forwarded-For address (behind a reverse proxy only)")
	maxBody := f.Int64("max-body", actors.DefaultMaxBodyBytes, "largest push body in `bytes`")
	pageSize := f.Int("page-size", actors.DefaultPageSize, "records per store read and per protobuf pull page")
	rpc := f.String("rpc", "", "native RPC address (not available yet)")
	metrics := f.String("metrics", "", "metrics address (not available yet)")
	verbose := f.Bool("v", false, "log health checks too")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.noArgs(pos); err != nil {
		return err
	}
	if *rpc != "" || *metrics != "" {
		return usageErr(name, "--rpc and --metrics are not available yet in this build")
	}
	pol, err := fsm.ParsePolicy(*policy)
	if err != nil {
		return usageErr(name, "--push-policy %q: want merge or strict", *policy)
	}
	if *rate < 0 || *maxBody <= 0 || *pageSize <= 0 {
		return usageErr(name, "--rate-limit must be >= 0, --max-body and --page-size > 0")
	}
	if *rate == 0 {
		*rate = -1 // CloudConfig: negative is no limit
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(serveLog, &slog.HandlerOptions{Level: level}))
	return f.withNode(func(n *actors.Node) error {
		h, err := n.CloudHandler(actors.CloudConfig{Policy: pol, RateLimit: *rate, TrustForwardedFor: *trustFF,
			MaxBodyBytes: *maxBody, PageSize: *pageSize, Logger: log})
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		url := "http://" + l.Addr().String()
		if f.json {
			err = writeJSON(out, struct {
				URL string `json:"url"`
			}{url})
		} else {
			_, err = fmt.Fprintf(out, "listening on %s\n", url)
		}
		if err != nil {
			l.Close()
			return err
		}
		info := n.Info()
		log.Info("serving", "node", info.NodeID, "kind", info.Kind, "url", url, "push_policy", pol.String(),
			"rate_limit", *rate, "max_body", *maxBody)
		ctx, stop := serveContext()
		defer stop()
		if err := actors.Serve(ctx, l, h); err != nil {
			return err
		}
		log.Info("stopped")
		return nil
	})
}
