// Command node runs a clinicsync node: it creates one, adds users, reads
// and writes its rows, serves the sync API, syncs with its peers and
// reports its status. See `node help` and the "Command line" section of
// the design, which this binary follows.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/kv"
)

func main() {
	stop := profiles(os.Args[1:], os.Stderr)
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: node <command> [flags]

Every command takes --data DIR (the node's directory) and --json
(machine-readable output), and --log-format text|json and --log-level
debug|info|warn|error (serve logs at info by default; the other
commands log to stderr only when --log-level is given). Failures exit 1
(2 for usage errors) with one line on stderr. While serve runs on DIR, the other commands on DIR
run inside it, through its control socket DIR/control.sock.

Available:
  node init     --data DIR --kind cloud|hub|mobile [--name N] [--clinic ID ...]
  node user add --data DIR --email E --password P [--name N] [--role R] [--clinic ID]
  node device add    --data DIR --name N [--clinic ID ...]     (cloud: registers a hub, prints its API key once)
  node device list|revoke --data DIR [ID]
  node serve    --data DIR [--http ADDR] [--push-policy merge|strict] [--rate-limit N]
                [--trust-forwarded-for] [--max-body BYTES] [--page-size N] [--push-budget BYTES]
                [--body-timeout D] [--max-conns N] [--max-conns-per-addr N] [--spool-dir DIR]
                [--upstream-interval D] [--sign-in-limit N] [--https ADDR] [--insecure-http]
                [--rpc ADDR] [--discovery ADDR|off] [--metrics ADDR] [-v]
                (cloud: GET/POST /api/v2/sync, POST /api/auth/sign-in and /api/login, /healthz on
                --http, behind a TLS-terminating proxy. hub: the Hikma app's RPC /rpc/* (sealed) on
                --http, and /api/v2/sync, sign-in and /healthz over TLS on --https, with the hub's
                self-generated certificate (DIR/tls.crt, tls.key); its plain --http refuses /api/
                unless --insecure-http (passwords and rows in cleartext on the LAN).
                A hub syncs with its cloud peer at start, every D (default 5m) and 2s after a
                device's push; 0: only on node sync; first line: listening on URL (a hub's
                --https: a second line); refused while another serve runs on DIR.
                --rpc ADDR: native RPC for Go nodes (protobuf over protoactor-go remote, every
                pull and push sealed after an X25519 handshake with the node's key); a hub's
                pairing string then carries "rpc":"host:port" and paired Go devices sync there.
                --discovery: a hub answers devices looking for it by its id on this UDP address
                (default port 4002 on --http's host), so they find it after its address changes.
                --metrics ADDR: Prometheus metrics at http://ADDR/metrics (a line says where);
                -v: --log-level debug)
  node pairing  --data DIR [--qr | --png FILE]
                (a serving hub's pairing string, as text, a QR code on the terminal or a PNG)
  node peer add --data DIR --type cloud_server|sync_hub --url URL [--name N] [--api-key K]
  node peer add --data DIR --type sync_hub --pairing S [--name N]
                (pins the hub's public key and TLS certificate; another certificate is refused;
                a pairing string with "rpc" adds the hub as rpc://host:port, native RPC, where
                a hub presenting another key is refused)
  node peer list|use|revoke --data DIR [ID]
  node login    --data DIR --email E --password P [--peer ID] [--no-sync]
                (a sync follows; --no-sync: one read checks the credentials instead)
  node sync     --data DIR [--peer ID] [--page-size N]
                (login, sync, force-*: progress per phase, pull and push, on a terminal's
                stdout; otherwise, or with --json, plain lines on stderr)
  node reset    --data DIR
                (forceReset: a served node's sync machine back to idle, abandoning a sync in
                flight; an idle node's interrupted pull is cleared, to start over next sync)
  node force-upload   --data DIR --since TIME [--peer ID]
  node force-download --data DIR --since TIME [--peer ID]
  node put      --data DIR --table T [--id ID] COL=VALUE ...
  node delete   --data DIR --table T --id ID
  node rows     --data DIR --table T [--id ID]
  node import   --data DIR --table T [--batch N] FILE.ndjson|-
                (bulk load: one JSON object a line, as a push's created rows)
  node mode     --data DIR [online|offline]
                (a device's mode: offline syncs through its store; online reads and writes
                straight through its peer (put, delete, rows) and keeps nothing locally. The
                clinic's policy, app_config system/operation_mode, decides: offline, online, or
                user_choice (then this command). Offline → online is refused while local changes
                are unsynced: "Sync local changes before switching to online mode")
  node status   --data DIR
                (state, mode, selected peer, each peer's last sync, pending rows per table,
                conflict log size; a serving node: addresses, sessions, pairing string)
  node conflicts --data DIR [--table T] [--id ID]
                (values that lost to a newer edit, oldest first)


login keeps the credentials in DIR/credentials.json (mode 0600, the
password in plain text, as the Hikma app keeps it): protect DIR.

put values: null; text as is; numbers; true/false/1/0; JSON text;
timestamps as epoch ms, RFC 3339 or YYYY-MM-DD; dates as YYYY-MM-DD.
`

// command runs one subcommand. name is how errors call it ("put",
// "user add").
type command func(e *env, name string, args []string) error

// env is what one run of a command works with. A command prints
// nothing before it has its node: a command whose node another process
// serves is run again there, and only that run's output is shown.
type env struct {
	// ctx ends when the command should stop waiting (and serve should
	// stop): for a command run for the control socket, when its client
	// goes away or serve stops.
	ctx context.Context
	out io.Writer
	// errOut is where a command shows progress (stderr); terminal says
	// that it is a terminal, outTerminal that out is.
	errOut                io.Writer
	terminal, outTerminal bool
	// in is the input a control socket's client sent with the command
	// (import's file); nil elsewhere.
	in io.Reader
	// open returns the node of a --data directory, with its sync engine
	// running when engine is set, and the function that lets it go.
	open func(dir string, engine bool) (n *actors.Node, release func() error, err error)
	// serving is the serve process a command runs in, for its control
	// socket; nil elsewhere.
	serving *serving
	// log is the command's log (--log-level, --log-format; nil: none),
	// where a sync engine it starts logs.
	log *slog.Logger
}

// serving describes a running `node serve`.
type serving struct {
	url string // where it serves HTTP
	pid int
	// A hub's: where it serves TLS ("" none) and its certificate's
	// fingerprint, its pairing string, and whether its plain HTTP
	// serves /api/ too (--insecure-http).
	httpsURL, fingerprint string
	pairing               string
	insecure              bool
}

// commands are the subcommands. (Set in init: serve runs the commands
// that reach its control socket, so its code refers to this table.)
var commands map[string]command

func init() {
	commands = map[string]command{
		"init":           cmdInit,
		"user":           cmdUser,
		"put":            cmdPut,
		"delete":         cmdDelete,
		"rows":           cmdRows,
		"status":         cmdStatus,
		"conflicts":      cmdConflicts,
		"import":         cmdImport,
		"serve":          cmdServe,
		"device":         cmdDevice,
		"peer":           cmdPeer,
		"login":          cmdLogin,
		"sync":           cmdSync,
		"force-upload":   cmdForce,
		"force-download": cmdForce,
		"pairing":        cmdPairing,
		"mode":           cmdMode,
		"reset":          cmdReset,
	}
}

// run is the whole program: it returns the exit status. A command on a
// node that a `node serve` process holds is forwarded to that process's
// control socket, and what it printed there is printed here.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run in ctx: serve stops when it ends.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, out: stdout, errOut: stderr, terminal: isTerminal(stderr), outTerminal: isTerminal(stdout)}
	e.open = func(dir string, engine bool) (*actors.Node, func() error, error) {
		return openLocal(dir, engine, e.log)
	}
	code, fwd := runEnv(e, args, stderr)
	if fwd == nil {
		return code
	}
	if fwd.input != nil {
		defer fwd.input.Close()
	}
	// The command's output streams back as it prints it, and its input
	// (import's file) goes with it.
	st := actors.ControlStreams{Stdout: stdout, Stderr: stderr, Terminal: e.terminal, OutTerminal: e.outTerminal}
	if fwd.input != nil {
		st.Stdin = fwd.input
	}
	code, err := fwd.conn.Run(args, st)
	if err != nil {
		fmt.Fprintln(stderr, oneLine(fmt.Sprintf("node %s: %v (the node is served by another process)", fwd.cmd, err)))
		return 1
	}
	return code
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// runEnv runs the command line args in e and returns its exit status,
// or, outside a serve process, the connection to forward it on when
// another process serves its node.
func runEnv(e *env, args []string, stderr io.Writer) (int, *forward) {
	fail := func(code int, format string, a ...any) (int, *forward) {
		fmt.Fprintln(stderr, oneLine(fmt.Sprintf(format, a...)))
		return code, nil
	}
	if len(args) == 0 {
		return fail(2, "node: missing command (run `node help` for usage)")
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.out, usage)
		return 0, nil
	}
	cmd, ok := commands[name]
	if !ok {
		return fail(2, "node: unknown command %q (run `node help` for usage)", name)
	}
	err := cmd(e, name, args[1:])
	var ue *usageError
	var ce *cmdError
	var fwd *forward
	if errors.As(err, &ce) {
		name = ce.cmd
	}
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &fwd):
		fwd.cmd = name
		return 0, fwd
	case errors.As(err, new(*helpShown)):
		return 0, nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.out, usage)
		return 0, nil
	case errors.As(err, &ue):
		return fail(2, "node %s: %v", ue.cmd, ue.err)
	default:
		return fail(1, "node %s: %v", name, err)
	}
}

// forward is what opening a node served by another process returns:
// the connection to that process's control socket, to run the whole
// command there.
type forward struct {
	conn *actors.ControlConn
	cmd  string // the command, as errors name it
	// input is what the command reads (import's file), sent with it
	// and closed after; nil for the others.
	input io.ReadCloser
}

func (f *forward) Error() string { return "the node is served by another process" }

// openLocal opens the node in dir in this process, or, when a `node
// serve` process holds it, returns a *forward to that process's control
// socket. The socket is tried first, so that a served node's commands
// do not wait for the store's lock; a store still locked after that is
// tried once more (serve may have been starting). The engine logs to
// log (nil: nowhere).
// mobileMemoryLimit is the Go heap's soft limit in a mobile node's
// process (GOMEMLIMIT overrides it).
const mobileMemoryLimit = 150 << 20

func openLocal(dir string, engine bool, log *slog.Logger) (*actors.Node, func() error, error) {
	if c, err := actors.DialControl(dir); err == nil {
		return nil, nil, &forward{conn: c}
	}
	clock, err := nodeClock()
	if err != nil {
		return nil, nil, err
	}
	merge, err := testMerge()
	if err != nil {
		return nil, nil, err
	}
	n, err := actors.Open(dir, clock)
	if errors.Is(err, kv.ErrLocked) {
		if c, derr := actors.DialControl(dir); derr == nil {
			return nil, nil, &forward{conn: c}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if n.Info().Kind == actors.KindMobile && os.Getenv("GOMEMLIMIT") == "" {
		// A phone's node: the garbage collector works to keep the heap
		// under a soft limit rather than let it double its live size
		// (an initial sync's live heap is well under it).
		debug.SetMemoryLimit(mobileMemoryLimit)
	}
	if engine {
		// The cause of a failure goes into the one line a command
		// prints, so the engine's own log is dropped unless asked for.
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		if err := n.Start(actors.NodeConfig{Transports: n.HTTPTransports(nil), Logger: log, Merge: merge}); err != nil {
			return nil, nil, errors.Join(err, n.Close())
		}
	}
	return n, n.Close, nil
}

// usageError is a mistake in the command line (exit 2).
type usageError struct {
	cmd string
	err error
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// dispatch runs the subcommand args[0] of a command group (node peer
// add ...); want says what the group takes.
func dispatch(e *env, name string, args []string, subs map[string]command, want string) error {
	if len(args) > 0 {
		if cmd, ok := subs[args[0]]; ok {
			return cmd(e, name+" "+args[0], args[1:])
		}
		switch args[0] {
		case "-h", "-help", "--help":
			return flag.ErrHelp
		}
	}
	return usageErr(name, "%s", want)
}

func usageErr(cmd, format string, a ...any) error {
	return &usageError{cmd, fmt.Errorf(format, a...)}
}

// cmdError names a subcommand of a group in a runtime failure.
type cmdError struct {
	cmd string
	err error
}

func (e *cmdError) Error() string { return e.err.Error() }
func (e *cmdError) Unwrap() error { return e.err }

// oneLine keeps a message on one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(strings.TrimSpace(s))
}

// flags is a subcommand's flag set with the common --data and --json,
// in the command's env.
type flags struct {
	*flag.FlagSet
	env  *env
	name string
	data string
	json bool
	log  logFlags
}

func (e *env) flags(name string) *flags {
	f := &flags{FlagSet: flag.NewFlagSet("node "+name, flag.ContinueOnError), env: e, name: name}
	f.SetOutput(io.Discard) // errors are reported by run, on one line
	f.StringVar(&f.data, "data", "", "the node's data `directory`")
	f.BoolVar(&f.json, "json", false, "machine-readable output")
	f.log.add(f.FlagSet)
	return f
}

// helpShown is -h on a command: its help is printed.
type helpShown struct{}

func (*helpShown) Error() string { return "help shown" }

// help prints the command's lines of the usage and its flags, with
// their defaults.
func (f *flags) help() error {
	var b strings.Builder
	in := false
	group, sub, _ := strings.Cut(f.name, " ")
	names := func(line string) bool { // the line shows node NAME, or node GROUP A|SUB|B
		w := strings.Fields(line)
		if len(w) < 2 || w[0] != "node" || !strings.HasPrefix(line, "  node ") {
			return false
		}
		if sub == "" {
			return slices.Contains(strings.Split(w[1], "|"), group)
		}
		return w[1] == group && len(w) > 2 && slices.Contains(strings.Split(w[2], "|"), sub)
	}
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case names(line):
			in = true
		case in && strings.HasPrefix(line, "                "): // a continuation
		default:
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	b.WriteString("\nflags:\n")
	f.VisitAll(func(fl *flag.Flag) {
		kind, text := flag.UnquoteUsage(fl)
		fmt.Fprintf(&b, "  --%s %s\n        %s", fl.Name, kind, text)
		if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" {
			fmt.Fprintf(&b, " (default %s)", fl.DefValue)
		}
		b.WriteString("\n")
	})
	if _, err := io.WriteString(f.env.out, strings.ReplaceAll(b.String(), "  --json \n", "  --json\n")); err != nil {
		return err
	}
	return &helpShown{}
}

// parse parses flags anywhere among the arguments (flag stops at the
// first positional one) and returns the positional ones. Everything
// after "--" is positional. It requires --data.
func (f *flags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, f.help()
			}
			return nil, usageErr(f.name, "%v", err)
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if f.data == "" {
		return nil, usageErr(f.name, "missing --data DIR")
	}
	if err := f.log.check(); err != nil {
		return nil, usageErr(f.name, "%v", err)
	}
	f.env.log = f.log.logger(f.env.errOut, nil)
	return pos, nil
}

// noArgs refuses positional arguments.
// parseAll parses args, refuses positional arguments and checks that
// the named flags are set.
func (f *flags) parseAll(args []string, required ...string) error {
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.noArgs(pos); err != nil {
		return err
	}
	for _, name := range required {
		if err := f.require(name, f.Lookup(name).Value.String()); err != nil {
			return err
		}
	}
	return nil
}

func (f *flags) noArgs(pos []string) error {
	if len(pos) > 0 {
		return usageErr(f.name, "unexpected argument %q", pos[0])
	}
	return nil
}

// require refuses an empty required flag.
func (f *flags) require(flagName, value string) error {
	if value == "" {
		return usageErr(f.name, "missing --%s", flagName)
	}
	return nil
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// withNode opens the node of --data, calls fn and lets the node go.
func (f *flags) withNode(fn func(*actors.Node) error) error { return f.use(false, fn) }

// withEngine is withNode with the node's sync engine running.
func (f *flags) withEngine(fn func(*actors.Node) error) error { return f.use(true, fn) }

func (f *flags) use(engine bool, fn func(*actors.Node) error) error {
	n, release, err := f.env.open(f.data, engine)
	if err != nil {
		return err
	}
	err = fn(n)
	if rerr := release(); err == nil {
		err = rerr
	}
	return err
}

// writeJSON writes v as one line of JSON.
func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writePairs writes key/value lines with the values aligned.
func writePairs(out io.Writer, pairs [][2]string) error {
	width := 0
	for _, p := range pairs {
		width = max(width, len(p[0]))
	}
	var b strings.Builder
	for _, p := range pairs {
		if p[1] == "" { // no trailing blanks
			fmt.Fprintf(&b, "%s\n", p[0])
			continue
		}
		fmt.Fprintf(&b, "%-*s  %s\n", width, p[0], p[1])
	}
	_, err := io.WriteString(out, b.String())
	return err
}
