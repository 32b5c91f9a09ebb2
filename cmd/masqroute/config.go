package main

// -config FILE and -print-config: the daemon's flags in a TOML file.
//
// The file holds what the command line holds, one key per flag, named as
// the flag without its dash:
//
//	listen = "0.0.0.0:443"
//	cert = "/etc/masqroute/cert.pem"
//	key = "/etc/masqroute/key.pem"
//	workers = 4
//	idle-timeout = "2m"
//	allow = ["10.1.0.0/16", "192.0.2.7"]   # a list joins with commas
//
// A flag given on the command line wins over the file; a key the daemon has
// no flag for is an error, not a silent no-op. -print-config prints the
// effective configuration (command line, file and what -dev implies, after
// checking) in the same format, so its output is a valid -config file.
// The file is read once, at start: SIGHUP reloads the certificate, token
// file and host addresses the file names, not the file itself.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// configOnlyFlags are flags that steer the command line itself; a config
// file cannot hold them and -print-config leaves them out.
var configOnlyFlags = []string{"config", "print-config", "version"}

// applyConfigFile sets, from the TOML file at path, every flag of fs that the
// command line did not set. Errors name the file and the key.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	var m map[string]any
	md, err := toml.DecodeFile(path, &m)
	if err != nil {
		if pe, ok := errors.AsType[toml.ParseError](err); ok {
			return fmt.Errorf("-config %s: line %d: %s", path, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("-config: %w", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// md.Keys is in file order, so the first bad key is the one reported.
	for _, k := range md.Keys() {
		name := k.String()
		if len(k) > 1 {
			continue // inside a table: reported at the table's own key
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("-config %s: %s: %s", path, name, fmt.Sprintf(format, args...))
		}
		value, err := configValue(m[name])
		if err != nil {
			return bad("%v", err)
		}
		if fs.Lookup(name) == nil || slices.Contains(configOnlyFlags, name) {
			return bad("no such setting (keys are the flags' names, e.g. listen, cert, workers)")
		}
		if given[name] {
			continue // the command line wins
		}
		if err := fs.Set(name, value); err != nil {
			return bad("invalid value %q: %v", value, err)
		}
	}
	return nil
}

// configValue is a TOML value as a flag's text: numbers and booleans as Go
// writes them, a list of them joined with commas (the list flags' syntax).
func configValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			if _, ok := e.([]any); ok {
				return "", errors.New("a list may hold strings and numbers, not lists")
			}
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", errors.New("tables are not settings: write the flag's name as a top-level key")
	default:
		return "", fmt.Errorf("a %T is not a setting's value (want a string, number, boolean or list)", v)
	}
}

// writeConfig prints every flag of fs with its current value as a TOML
// file -config reads back: booleans and numbers bare, everything else
// (durations, addresses, levels, sizes) as a string.
func writeConfig(w io.Writer, fs *flag.FlagSet) error {
	m := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(configOnlyFlags, f.Name) {
			return
		}
		m[f.Name] = f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			switch v := g.Get().(type) {
			case bool, int, int64, uint, uint64, float64:
				m[f.Name] = v
			}
		}
	})
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# masqroute -print-config: the effective configuration, a valid -config file")
	// The encoder sorts the keys, as -help sorts the flags.
	if err := toml.NewEncoder(&buf).Encode(m); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}
