// pstest wraps Google's in-memory Pub/Sub fake (cloud.google.com/go/pubsub/pstest)
// as a process for the local stack and the tests. It uses only the API shared by
// the Debian 12 and 13 packages: pstest.NewServer() and srv.Addr.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/pstest"
)

func main() {
	srv := pstest.NewServer()
	// The fake only listens on a random port; the launcher reads it from this line.
	fmt.Printf("pstest listening on %s\n", srv.Addr)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	srv.Close()
}
