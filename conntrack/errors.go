package conntrack

import "errors"

// Errors returned by [Table.Insert] and [Table.SetClient] when they refuse a
// flow. They are
// returned unwrapped, so a refusal under a flood costs no allocation;
// compare with errors.Is.
var (
	// ErrListenerLimit means the listener already has
	// ListenerConfig.MaxFlows live flows.
	ErrListenerLimit = errors.New("conntrack: listener flow limit reached")
	// ErrClientLimit means the client already has
	// ListenerConfig.MaxFlowsPerClient live flows on the listener.
	ErrClientLimit = errors.New("conntrack: client flow limit reached")
	// ErrTableFull means the shard holds MaxFlowsPerShard flows.
	ErrTableFull = errors.New("conntrack: shard full")
	// ErrUnknownListener means the ListenerID was not returned by
	// Table.AddListener of this table.
	ErrUnknownListener = errors.New("conntrack: unknown listener")
	// ErrUnknownBackend means the BackendID was not returned by
	// Table.Backend of this table.
	ErrUnknownBackend = errors.New("conntrack: unknown backend")
	// ErrUnknownFlow means the ID is not a live flow of this table.
	ErrUnknownFlow = errors.New("conntrack: unknown flow")
)
