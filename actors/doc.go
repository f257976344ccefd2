// Package actors is the node: the I/O shell around the deterministic
// parts (fsm decides, kv persists, codec converts).
//
// # Nodes
//
// Init creates a node's directory (bbolt store, key pair, identity); Open
// opens it; Start runs its engine (a protoactor actor system) with a
// TransportFactory that says how to reach each peer. The embeddable API is
// the *Node methods: Sync, ForceReset, State, Subscribe, PutValues (Go
// values) and Put (command-line text), Delete, Rows, Conflicts, Import,
// Status, AddUser, peers and devices, and the serving side (Serve, and
// its parts Server, CloudHandler, HikmaHandler). The node binary is built
// on it; Example shows a whole sync.
//
// # Embedding
//
// A Go program runs a node as the node binary does:
//
//	n, err := actors.Open(dir, nil) // after actors.Init(dir, ...) once
//	defer n.Close()
//	err = n.Serve(ctx, actors.ServeOptions{
//		HTTP: ":4001", HTTPS: ":4443", // a hub: Hikma RPC, /api/v2/sync over TLS
//		UpstreamInterval: time.Minute,  // syncs with its cloud peer on its own
//		Ready: func(a actors.Addrs) error {
//			fmt.Println(a.Pairing) // what devices pair with
//			return nil
//		},
//	})
//
// Serve starts the sync engine, listens, serves until ctx ends and
// then drains; ServeOptions nests the serving configs (CloudConfig for
// push policy and rate limits, ServeConfig for connection bounds). A
// device pairs with a hub through its pairing string (ParsePairing,
// PairingPeer, AddPeer), starts its engine (Start with HTTPTransports),
// signs in (Login) and syncs (Sync); a hub reaches its cloud with the
// API key the cloud's AddDevice returned. PutValues takes string, bool,
// integers, float64, nil, json.RawMessage and time.Time, converted by
// the codec's lossless rules or refused with the reason.
// ExampleNode_Serve runs a cloud, a hub and two phones in one program.
//
// # Syncing
//
// A Run is one sync with one peer as a deterministic procedure: Start,
// OnPull, OnPush and Fail each return the next request to send or the
// result, and every store change is one transaction (a pulled page with
// the peer's new pull cursor; the acknowledged rows marked synced). The
// coordinator actor (one per node) owns the fsm.Machine and drives a Run
// through messages, one at a time: a request while one runs is skipped.
// A peer actor (one per peer) owns that peer's Transport and makes each
// call in a goroutine, so no Receive ever waits on the network. The
// simulator starts an engine per node (NewNode, over its in-memory
// store) and syncs through it over MemNet, an in-memory network with
// partitions and a fault hook; the protocol scripts drive the same Run
// synchronously (Run.Drive).
//
// # Serving
//
// Server answers pulls (pages of the cursor index through fsm.Serve) and
// pushes (one kv transaction through fsm.Push's merge) for a cloud or a
// hub; CloudHandler puts it behind the Hikma/WatermelonDB HTTP API.
// ServeConfig.Serve bounds what clients may hold: connections in all
// and per address (LimitListener), time for headers and bodies and for
// each response write (never a whole streamed pull); CloudHandler's
// push budget bounds the push bodies in flight (503 with Retry-After
// past it). CloudHandler also answers the Hikma sign-in
// (/api/auth/sign-in, /api/login) with a SessionTokens token, which
// /api/v2/sync does not take. A serving hub relays on its own: Upstream
// syncs it with its cloud through the node's engine at start, by the
// clock and soon after a device's push (CloudConfig.OnPush).
//
// # TLS and pairing
//
// A hub serves its /api/ surface (passwords, rows) over TLS with a
// persisted self-signed certificate (Node.TLSCertificate,
// ServerTLSConfig); its plain listener keeps the sealed Hikma RPC and
// refuses /api/ (PlainHTTPGuard). Node.Pairing gives the pairing string
// (the Hikma QR payload plus the https URL and the certificate's
// Fingerprint); ParsePairing and PairingPeer turn it into a peer that
// pins the certificate: HTTPTransports then trusts that certificate
// alone (PinnedTLSConfig) and fails with ErrCertMismatch on any other.
//
// # Native RPC
//
// With ServeOptions.RPC a node also serves other Go nodes over
// protoactor-go remote (rpc.go): a clear handshake (the client's node
// id and ephemeral X25519 key; the node's static key and a session id),
// then every pull and push sealed with the codec's Sealer and Opener,
// per direction, served by one actor per session through the same
// Server as /api/v2/sync. A hub's pairing string then carries "rpc", and
// PairingPeer makes an rpc://host:port peer whose key is pinned:
// HTTPTransports gives it an RPCTransport, which refuses a node
// presenting another key (ErrHubKeyMismatch). Caveats: protoactor
// remote answers over a connection the answering side dials, so a
// client also listens (its local address toward the peer, a free port)
// and must be reachable from the peer; and every remote start sets
// gRPC's global logger, which the race detector reports when several
// remotes run in one process (tests with several nodes).
//
// # Control socket
//
// While a node serves, ServeControl listens on DIR/control.sock: the
// node binary forwards any other command on that directory to it and
// runs it there against the open node, so commands work whether or not
// a serve process holds the store. A command's output streams back as
// it is printed, and its input (import's file) streams to it as it
// reads (ControlConn.Run, ControlStreamsOf).
//
// # Errors
//
// A failed sync is a Result with outcome "error", the message a user
// should see (per peer type for network failures, as the Hikma app words
// them) and the cause for the log. ErrNoPeer and ErrSyncInProgress carry
// the Hikma wording too.
//
// # Caveats
//
// The pull cursor is saved with the last pulled page, as DESIGN.md asks,
// so a sync whose push fails has still moved it; the pulled rows are in
// the store with it. Only Run's store transactions happen inside the
// coordinator's Receive; network calls never do. A device that moves
// between a hub and the cloud mirrors each peer with a full pull, but
// the merge orders writes by sync, not by time: its older write still
// pending on a cut-off hub can reach the cloud after a newer one it
// pushed there directly (bin/simulate --seed 52).
package actors
