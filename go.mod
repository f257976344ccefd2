module github.com/clinicsync/clinicsync

go 1.26.0

require (
	github.com/cockroachdb/datadriven v1.0.3
	github.com/looplab/fsm v1.0.3
	go.etcd.io/bbolt v1.4.3
	golang.org/x/crypto v0.59.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc // indirect
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
