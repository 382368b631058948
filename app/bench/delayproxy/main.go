// Command delayproxy forwards TCP connections to a target and delivers every chunk
// of bytes, in each direction, a fixed delay after it was read: a service on loopback
// made to look as far away as one across a network (scripts/qbench.sh's DELAY, for
// what several batches in flight per queue buy when Redis is a round trip away).
//
//	delayproxy -listen 127.0.0.1:26461 -target 127.0.0.1:26451 -delay 250us
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "address to forward to")
	delay := flag.Duration("delay", 250*time.Microsecond, "delay added to each direction (a round trip gains twice this)")
	flag.Parse()
	if *target == "" {
		log.Fatal("delayproxy: -target is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stdout, "delayproxy listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			t, err := net.Dial("tcp", *target)
			if err != nil {
				log.Printf("delayproxy: %v", err)
				c.Close()
				return
			}
			go pipe(c, t, *delay)
			go pipe(t, c, *delay)
		}()
	}
}

// chunk is what one read returned, and when it is due at the other end.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies from src to dst, each chunk delay after it was read, in order; it
// closes both when either side ends.
func pipe(src, dst net.Conn, delay time.Duration) {
	defer src.Close()
	defer dst.Close()
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}
