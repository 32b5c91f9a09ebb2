package proxy

// RaceEnabled tells the external test package whether the race detector is
// on (timing tests skip themselves under it).
const RaceEnabled = raceEnabled
