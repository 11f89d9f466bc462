package client_test

import (
	"context"
	"log"
	"time"

	"github.com/huddle-rtc/huddle/client"
)

// A bot that joins a room and echoes every data channel message back.
func ExampleJoin() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Join(ctx, "wss://huddle.example.com", "lobby", client.Options{Name: "echo-bot"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for ev := range c.Events() {
		switch e := ev.(type) {
		case client.PeerConnected:
			log.Printf("%s connected over %s in %v", e.Peer.Name(), e.Pair.Type(), e.Elapsed)
		case client.DataMessage:
			if e.IsString {
				_ = e.Channel.SendText(string(e.Data))
			} else {
				_ = e.Channel.Send(e.Data)
			}
		case client.PeerLeft:
			log.Printf("%s left (%s)", e.Peer.Name(), e.Reason)
		}
	}
	log.Printf("stopped: %v", c.Err())
}
