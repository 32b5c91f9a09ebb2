package main

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
)

// newLogger is the logger for -log-format and -log-level: slog's text or
// JSON handler on w. Every value is kept to one line, so a record is one
// line of output in either format. Who logs goes in a component attribute
// (component=daemon, proxy, tls, ...), not in the message.
func newLogger(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: oneLine}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want text or json", format)
}

// oneLine rewrites a string or error value that spans lines (an
// errors.Join, a panic stack) onto one, lines separated by "; ". The text
// handler would quote it onto one line anyway, but as "\n" escapes that
// grep and journal viewers show badly.
func oneLine(_ []string, a slog.Attr) slog.Attr {
	var s string
	switch a.Value.Kind() {
	case slog.KindString:
		s = a.Value.String()
	case slog.KindAny:
		err, ok := a.Value.Any().(error)
		if !ok {
			return a
		}
		s = err.Error()
	default:
		return a
	}
	if !strings.ContainsAny(s, "\r\n") {
		return a
	}
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	a.Value = slog.StringValue(strings.Join(lines, "; "))
	return a
}

// routeStdLog sends what libraries print with the standard log package
// (connect-ip-go logs "handling stream failed: H3_NO_ERROR" on every
// tunnel close) through l at debug level, with component=stdlog: hidden
// unless -log-level debug. It is for the life of the process: such
// messages come from goroutines that outlive the command's own work, so
// putting the old output back on return would let them through.
func routeStdLog(l *slog.Logger) {
	log.SetFlags(0) // the handler adds the time
	log.SetPrefix("")
	log.SetOutput(slog.NewLogLogger(l.With("component", "stdlog").Handler(), slog.LevelDebug).Writer())
}
