package proxy

// RaceEnabled tells the external test package whether the race detector is
// on (timing tests skip themselves under it).
const RaceEnabled = raceEnabled

// SetShutdownHooks makes ServeConn call beforePublish once a connection is
// listed and before its h3 handle is published, and Shutdown call
// goAwaysSent once it has told every listed connection goAway (conn.go,
// shutdownHooks). Call it before Serve; either may be nil.
func SetShutdownHooks(p *Proxy, beforePublish, goAwaysSent func()) {
	p.hooks = shutdownHooks{beforePublish: beforePublish, goAwaysSent: goAwaysSent}
}
