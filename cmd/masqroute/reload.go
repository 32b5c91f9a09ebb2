package main

import (
	"errors"
	"fmt"
)

// A reloadStep is one thing SIGHUP reads again: the -cert/-key pair, the
// -auth-tokens file, the host's own addresses (refused as targets);
// whatever else learns to reload joins the list in daemon.start. A step
// that fails keeps what it had and says so; the steps after it still run.
type reloadStep struct {
	name   string       // what it reloads, for the log
	reload func() error // must be safe while the proxy serves
}

// reload runs every reload step in order: the one handler SIGHUP calls. It
// returns the steps' errors, which it has logged already.
func (d *daemon) reload() error {
	if len(d.reloadSteps) == 0 {
		d.log.Info("SIGHUP: nothing to reload")
		return nil
	}
	var errs []error
	for _, s := range d.reloadSteps {
		if err := s.reload(); err != nil {
			d.log.Error("reload failed; the old one stays", "what", s.name, "error", err)
			errs = append(errs, fmt.Errorf("reload %s: %w", s.name, err))
			continue
		}
		d.log.Info("reloaded", "what", s.name)
	}
	return errors.Join(errs...)
}
