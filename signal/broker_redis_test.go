package signal_test

import (
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/huddle-rtc/huddle/signal"
)

// testRedisURL is the Redis server of the tests that need one (CI runs one
// on 127.0.0.1:6379); HUDDLE_TEST_REDIS_URL overrides it.
func testRedisURL() string {
	if u := os.Getenv("HUDDLE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// needRedis skips the test when no Redis server answers, or fails it when
// CI=true.
func needRedis(t testing.TB) {
	t.Helper()
	opt, err := redis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatalf("HUDDLE_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		msg := "signal: no Redis server at " + testRedisURL() + " (" + err.Error() + "); run redis-server to test the Redis broker"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// redisPrefix returns a fresh key prefix whose keys are deleted when the
// test ends (after every node of it closed: cleanups run last-in first-out).
func redisPrefix(t testing.TB) string {
	t.Helper()
	needRedis(t)
	prefix := "huddle-test-" + strings.ToLower(rand.Text()[:12])
	t.Cleanup(func() { deleteKeys(t, prefix) })
	return prefix
}

func deleteKeys(t testing.TB, prefix string) {
	opt, _ := redis.ParseURL(testRedisURL())
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("deleting the test's Redis keys: %v", err)
	}
}

// newRedisNode returns a Redis broker for one node sharing prefix.
func newRedisNode(t testing.TB, prefix string, grace time.Duration) *signal.RedisBroker {
	t.Helper()
	b, err := signal.NewRedisBroker(signal.RedisOptions{
		URL: testRedisURL(), Node: "node-" + strings.ToLower(rand.Text()[:8]), Prefix: prefix, Grace: grace,
	})
	if err != nil {
		t.Fatalf("NewRedisBroker: %v", err)
	}
	return b
}

// underRedis reports whether the suite runs against the Redis broker.
func underRedis() bool { return os.Getenv("HUDDLE_TEST_BROKER") == "redis" }

// suiteBroker is the broker newHarness gives a hub the test did not give
// one: nil (a LocalBroker) unless HUDDLE_TEST_BROKER=redis, then a Redis
// broker of its own key prefix, so that every harness is its own cluster.
func suiteBroker(t testing.TB, cfg signal.Config) signal.Broker {
	t.Helper()
	if !underRedis() {
		return nil
	}
	return newRedisNode(t, redisPrefix(t), cfg.ResumeGrace)
}

// skipUnderRedis skips a test that does not apply to the Redis broker.
func skipUnderRedis(t testing.TB, why string) {
	t.Helper()
	if underRedis() {
		t.Skip("not under the Redis broker: " + why)
	}
}

// TestSuiteWithRedisBroker runs this package's tests again, in a child
// process, with every hub on the Redis broker.
func TestSuiteWithRedisBroker(t *testing.T) {
	if underRedis() {
		t.Skip("this is the run under the Redis broker")
	}
	if testing.Short() {
		t.Skip("the suite under Redis is not short")
	}
	needRedis(t)
	args := []string{"-test.count=1", "-test.timeout=10m"}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HUDDLE_TEST_BROKER=redis")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite under the Redis broker failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("the suite under the Redis broker did not pass:\n%s", out)
	}
}
