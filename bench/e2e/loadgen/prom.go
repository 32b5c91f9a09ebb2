package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// PrometheusProbe scrapes a masqroute proxy's Prometheus endpoint (url,
// e.g. "http://127.0.0.1:9464/metrics") for the counters along the path and
// its drop reasons. A nil client is http.DefaultClient.
func PrometheusProbe(url string, client *http.Client) Probe {
	if client == nil {
		client = http.DefaultClient
	}
	return ProbeFunc(func(ctx context.Context) (Counters, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return Counters{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return Counters{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return Counters{}, fmt.Errorf("scrape %s: %s", url, resp.Status)
		}
		return parseProxyMetrics(io.LimitReader(resp.Body, 16<<20))
	})
}

// parseProxyMetrics reads masqroute's counters from the Prometheus text
// format: the hops, the drops and every masqroute_datapath_* counter. Only
// the series it needs are parsed; a missing one reads 0.
func parseProxyMetrics(r io.Reader) (Counters, error) {
	var dispatched, delivered, toTarget, toClient uint64
	drops := make(map[string]uint64)
	var dataPath map[string]uint64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, value, ok := parseSample(line)
		if !ok {
			continue
		}
		switch name {
		case "masqroute_router_dispatched_total":
			dispatched = value
		case "masqroute_router_delivered_total":
			delivered = value
		case "masqroute_datagrams_total":
			switch labels["direction"] {
			case "to_target":
				toTarget = value
			case "to_client":
				toClient = value
			}
		case "masqroute_datagrams_dropped_total":
			if reason := labels["reason"]; reason != "" {
				drops["proxy."+reason] = value
			}
		default:
			if key := dataPathKey(name, labels); key != "" {
				if dataPath == nil {
					dataPath = make(map[string]uint64)
				}
				dataPath[key] = value
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Counters{}, err
	}
	return Counters{Hops: proxyHops(dispatched, delivered, toTarget, toClient), Drops: drops, DataPath: dataPath}, nil
}

// parseSample splits `name{k="v",...} value [timestamp]`. Label values with
// escaped quotes are not needed here and not handled.
func parseSample(line string) (name string, labels map[string]string, value uint64, ok bool) {
	rest := line
	if i := strings.IndexAny(rest, "{ "); i < 0 {
		return "", nil, 0, false
	} else {
		name, rest = rest[:i], rest[i:]
	}
	if strings.HasPrefix(rest, "{") {
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", nil, 0, false
		}
		labels = make(map[string]string)
		for _, kv := range strings.Split(rest[1:end], ",") {
			k, v, found := strings.Cut(kv, "=")
			if found {
				labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
		rest = rest[end+1:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	f, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || f < 0 {
		return "", nil, 0, false
	}
	return name, labels, uint64(f), true
}
