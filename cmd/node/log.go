package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// logFlags are every command's --log-format and --log-level.
type logFlags struct {
	format, level string
}

func (l *logFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log lines as `text` (key=value) or json")
	fs.StringVar(&l.level, "log-level", "", "the least `level` logged: debug, info, warn or error (default: info for serve; the other commands log only when it is given)")
}

// check refuses values the flags do not take.
func (l *logFlags) check() error {
	if l.format != "text" && l.format != "json" {
		return fmt.Errorf("--log-format %q: want text or json", l.format)
	}
	if l.level == "" {
		return nil
	}
	_, err := l.parseLevel()
	return err
}

func (l *logFlags) parseLevel() (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil || l.level == "" {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	return lv, nil
}

// logger is the log the flags ask for, to w: at --log-level, else at
// def; nil when neither is given.
func (l *logFlags) logger(w io.Writer, def slog.Leveler) *slog.Logger {
	if l.level != "" {
		lv, err := l.parseLevel()
		if err != nil {
			panic("cmd/node: logger before check: " + err.Error())
		}
		def = lv
	}
	if def == nil {
		return nil
	}
	opts := &slog.HandlerOptions{Level: def}
	if l.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
