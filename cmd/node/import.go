package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/clinicsync/clinicsync/actors"
)

// stdin is what `import -` reads.
var stdin io.Reader = os.Stdin

// cmdImport: node import --data DIR --table T [--batch N] FILE.ndjson|-
//
// A node served by another process imports there: this process sends
// the file's content through the control socket as the command reads
// it (rather than the path, which the server may not resolve or read
// as this process does, and which stdin does not have).
func cmdImport(e *env, name string, args []string) error {
	f := e.flags(name)
	table := f.String("table", "", "the table")
	batch := f.Int("batch", actors.DefaultImportBatch, "rows per transaction")
	pos, err := f.parse(args)
	if err != nil {
		return err
	}
	if err := f.require("table", *table); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr(name, "want one FILE.ndjson to import (- for stdin)")
	}
	if *batch <= 0 {
		return usageErr(name, "--batch must be > 0")
	}
	var in io.ReadCloser
	switch {
	case e.in != nil: // sent through the control socket
		in = io.NopCloser(e.in)
	case e.serving != nil:
		return errors.New("the client sent no input: the file's content must come through the control socket")
	case pos[0] == "-":
		in = io.NopCloser(stdin)
	default:
		if in, err = os.Open(pos[0]); err != nil {
			return err
		}
	}
	sent := false // in goes with the command to the serving process
	defer func() {
		if !sent {
			in.Close()
		}
	}()

	start := time.Now()
	bar := &progress{w: e.errOut, on: e.terminal, table: *table, start: start}
	var res actors.ImportResult
	err = f.withNode(func(n *actors.Node) (err error) {
		res, err = n.Import(e.ctx, *table, in, actors.ImportOptions{BatchRows: *batch, Progress: bar.update})
		return err
	})
	bar.clear()
	var fwd *forward
	if errors.As(err, &fwd) {
		fwd.input, sent = in, true
		return err
	}
	if err != nil {
		if res.Imported+res.Rejected > 0 {
			return fmt.Errorf("%w (before it: %d rows imported, %d rejected)", err, res.Imported, res.Rejected)
		}
		return err
	}
	secs := time.Since(start).Seconds()
	if f.json {
		type rejected struct {
			ID     string `json:"id"`
			Line   int    `json:"line"`
			Reason string `json:"reason"`
		}
		rows := make([]rejected, 0, len(res.RejectedRows))
		for _, rj := range res.RejectedRows {
			rows = append(rows, rejected{rj.ID, rj.Line, rj.Reason})
		}
		unknown := res.Unknown
		if unknown == nil {
			unknown = map[string]int{}
		}
		return writeJSON(e.out, struct {
			Imported       int            `json:"imported"`
			Rejected       int            `json:"rejected"`
			RejectedRows   []rejected     `json:"rejected_rows"`
			Seconds        float64        `json:"seconds"`
			UnknownColumns map[string]int `json:"unknown_columns"`
		}{res.Imported, res.Rejected, rows, math.Round(secs*1000) / 1000, unknown})
	}
	rejectedLine := strconv.Itoa(res.Rejected)
	if len(res.RejectedRows) < res.Rejected {
		rejectedLine += fmt.Sprintf(" (the first %d below)", len(res.RejectedRows))
	}
	pairs := [][2]string{
		{"table", *table},
		{"imported", strconv.Itoa(res.Imported)},
		{"rejected", rejectedLine},
		{"seconds", strconv.FormatFloat(secs, 'f', 3, 64)},
		{"rows/s", strconv.FormatFloat(rate(res.Imported+res.Rejected, secs), 'f', 0, 64)},
	}
	for _, rj := range res.RejectedRows {
		why := rj.Reason
		if rj.ID != "" {
			why = rj.ID + ": " + why
		}
		pairs = append(pairs, [2]string{"line " + strconv.Itoa(rj.Line), oneLine(why)})
	}
	for _, col := range slices.Sorted(maps.Keys(res.Unknown)) {
		pairs = append(pairs, [2]string{"unknown column", fmt.Sprintf("%s (kept, in %d rows)", col, res.Unknown[col])})
	}
	return writePairs(e.out, pairs)
}

func rate(rows int, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(rows) / secs
}

// progress shows an import's progress on one terminal line, redrawn at
// most every progressEvery; off a terminal it shows nothing.
type progress struct {
	w     io.Writer
	on    bool
	table string
	start time.Time
	drawn time.Time // the last draw; zero before the first
}

const progressEvery = 200 * time.Millisecond

func (p *progress) update(rows int) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.drawn) < progressEvery {
		return
	}
	p.drawn = now
	fmt.Fprintf(p.w, "\r\x1b[Kimporting %s: %d rows, %.0f rows/s", p.table, rows, rate(rows, now.Sub(p.start).Seconds()))
}

// clear erases the progress line, if drawn, for what follows.
func (p *progress) clear() {
	if p.on && !p.drawn.IsZero() {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
