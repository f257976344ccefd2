package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	qrcode "github.com/skip2/go-qrcode"
)

// cmdPairing: node pairing --data DIR [--qr | --png FILE]
//
// The pairing string names the addresses the hub serves on, so only a
// serve process knows it: this command asks the one holding DIR for it
// through its control socket, then prints it (or its QR code) here, so
// that --png writes FILE where this command runs.
func cmdPairing(e *env, name string, args []string) error {
	f := e.flags(name)
	qr := f.Bool("qr", false, "print the pairing string as a QR code on the terminal")
	png := f.String("png", "", "write the QR code as a PNG image to `FILE`")
	if err := f.parseAll(args); err != nil {
		return err
	}
	if *qr && *png != "" {
		return usageErr(name, "--qr and --png: want one of them")
	}
	if s := e.serving; s != nil { // inside serve, through its control socket
		if s.pairing == "" {
			return errors.New("only a hub has a pairing string")
		}
		return writeJSON(e.out, struct {
			Pairing string `json:"pairing"`
		}{s.pairing})
	}
	s, err := servedPairing(f)
	if err != nil {
		return err
	}
	switch {
	case *qr:
		code, err := qrcode.New(s, qrcode.Medium)
		if err != nil {
			return fmt.Errorf("making the QR code: %w", err)
		}
		_, err = fmt.Fprint(e.out, code.ToSmallString(false))
		return err
	case *png != "":
		if err := qrcode.WriteFile(s, qrcode.Medium, 512, *png); err != nil {
			return fmt.Errorf("writing the QR code: %w", err)
		}
	}
	if f.json {
		return writeJSON(e.out, struct {
			Pairing string `json:"pairing"`
			PNG     string `json:"png,omitempty"`
		}{s, *png})
	}
	if *png != "" {
		return writePairs(e.out, [][2]string{{"pairing", s}, {"png", *png}})
	}
	_, err = fmt.Fprintln(e.out, s)
	return err
}

// servedPairing asks the serve process holding f.data for its pairing
// string; on a node nobody serves it says what to run.
func servedPairing(f *flags) (string, error) {
	c, err := actors.DialControl(f.data)
	if err != nil {
		var kind actors.Kind
		if err := f.withNode(func(n *actors.Node) error { kind = n.Info().Kind; return nil }); err != nil {
			return "", err
		}
		if kind != actors.KindHub {
			return "", fmt.Errorf("only a hub has a pairing string, this is a %s", kind)
		}
		return "", fmt.Errorf("%s is not served: the pairing string names the addresses the hub serves on; start `node serve --data %s --http ADDR --https ADDR` first", f.data, f.data)
	}
	var out, errOut bytes.Buffer
	code, err := c.Run([]string{"pairing", "--data", f.data, "--json"}, actors.ControlStreams{Stdout: &out, Stderr: &errOut})
	if err != nil {
		return "", fmt.Errorf("%w (the node is served by another process)", err)
	}
	if code != 0 {
		return "", errors.New(strings.TrimPrefix(strings.TrimSpace(errOut.String()), "node pairing: "))
	}
	var r struct {
		Pairing string `json:"pairing"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Pairing == "" {
		return "", fmt.Errorf("the serve process answered %q, not a pairing string", out.String())
	}
	return r.Pairing, nil
}
