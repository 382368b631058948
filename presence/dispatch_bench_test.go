package presence

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// BenchmarkRedisDispatchBatch is one batch of targeted messages (as a queue's
// consumer hands them off) through the Redis dispatcher against the real Redis: the
// script pipeline and the relay publish, per message, for batch sizes seen in
// `pushbridge bench -drain` runs. 1,000 users on 2 live instances, each message with a
// dedupe key, as from RabbitMQ with a message-id.
func BenchmarkRedisDispatchBatch(b *testing.B) {
	for _, size := range []int{1, 25, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			rdb, opts := newTestRedis(b)
			opts.PresenceTTL = time.Minute
			opts = opts.withDefaults()
			ctx := context.Background()
			const users = 1000
			spreadUsers(b, ctx, rdb, opts, 2, users)
			disp := NewRedisDispatcher(rdb, opts)
			batch := make([]Dispatch, size)
			n := 0
			b.ResetTimer()
			for b.Loop() {
				for i := range batch {
					batch[i] = Dispatch{
						M:   &Message{UserID: "u" + strconv.Itoa(n%users), RoutingKey: "contract", Body: []byte(`{"seq":` + strconv.Itoa(n) + `,"t":1764680000000000000}`)},
						Key: "qbench\x00" + strconv.Itoa(n),
					}
					n++
				}
				disp.DispatchBatch(ctx, batch)
				for i := range batch {
					if batch[i].Err != nil {
						b.Fatal(batch[i].Err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/msg")
		})
	}
}
