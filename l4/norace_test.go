//go:build !race

package l4

// raceEnabled is set when the race detector is on: sizes shrink, and
// memory bounds are not checked (the detector multiplies memory use).
const raceEnabled = false
