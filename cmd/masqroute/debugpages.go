package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/masqroute/masqroute/engine/proxy"
)

// tunnelsHandler serves /debug/tunnels: the live tunnels, oldest first,
// with their counters — as an aligned table, or as JSON with ?format=json.
func tunnelsHandler(p *proxy.Proxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts := p.Tunnels()
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if ts == nil {
				ts = []proxy.TunnelInfo{}
			}
			_ = enc.Encode(ts)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%d live tunnels\n\n", len(ts))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "STREAM\tKIND\tTARGET\tCLIENT\tAGE\tTO_TARGET\tBYTES\tTO_CLIENT\tBYTES\tDROPPED\t")
		for _, t := range ts {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", t.Stream, t.Kind, t.Target, t.Client,
				t.Duration.Round(time.Second), t.ToTarget, t.ToTargetBytes, t.ToClient, t.ToClientBytes, t.Dropped)
		}
		_ = tw.Flush()
	})
}

// qlogTracer writes a qlog trace of each QUIC connection to
// DIR/<odcid>_<server|client>.sqlog, as quic-go's QLOGDIR tracer does but
// into -qlog's directory and with failures logged, not fatal.
func qlogTracer(dir string, log *slog.Logger) func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	return func(_ context.Context, isClient bool, id quic.ConnectionID) qlogwriter.Trace {
		label := "server"
		if isClient {
			label = "client"
		}
		path := filepath.Join(dir, fmt.Sprintf("%s_%s.sqlog", id, label))
		f, err := os.Create(path)
		if err != nil {
			log.Warn("no qlog for this connection", "component", "qlog", "error", err)
			return nil
		}
		seq := qlogwriter.NewConnectionFileSeq(&bufferedFile{bufio.NewWriter(f), f}, isClient, id)
		go seq.Run()
		return seq
	}
}

// bufferedFile flushes its buffer before it closes the file.
type bufferedFile struct {
	*bufio.Writer
	f *os.File
}

func (b *bufferedFile) Close() error {
	err := b.Flush()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return err
}
