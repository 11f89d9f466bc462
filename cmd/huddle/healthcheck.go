package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/huddle-rtc/huddle/internal/app"
)

// healthcheckCommand asks the server on this machine (HUDDLE_ADDR) for
// /healthz: exit 0 when it answers 200, 1 otherwise. It is the image's
// HEALTHCHECK, which has no shell or curl to run.
func healthcheckCommand(stdout, stderr io.Writer) int {
	cfg, err := app.LoadConfig(os.Environ())
	if err != nil {
		fmt.Fprintf(stderr, "huddle healthcheck: %v\n", err)
		return 1
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		fmt.Fprintf(stderr, "huddle healthcheck: HUDDLE_ADDR %q: %v\n", cfg.Addr, err)
		return 1
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	url := scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
	client := &http.Client{
		Timeout: 3 * time.Second,
		// The server's certificate names its public host, not loopback.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "huddle healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "huddle healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}
