package planner

// SetCrashBeforeAck makes the planner skip (and nak) the ack of a batch
// while f returns true, as if it had died after planning and publishing.
func (p *Planner) SetCrashBeforeAck(f func() bool) { p.testCrashBeforeAck = f }
