package taskloop.bench;

import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelConsumerOptions.CommitMode;
import io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Consumes a topic from earliest with the Confluent Parallel Consumer until it has handled
 * the expected count, each message costing what bench/peers.sh asks (noop, sleep_ms=N or
 * spin_us=N), and prints `RESULT peer parallel-consumer ORDERING COST msgs_per_s N`, timed
 * from the first message handled to the last, as bench/catchup.sh times taskloop.
 * Usage: ParallelConsumerPeer BROKERS TOPIC GROUP EXPECTED COST CONCURRENCY ORDERING
 * (ORDERING: key, partition or unordered).
 */
public final class ParallelConsumerPeer {
  public static void main(String[] args) throws Exception {
    if (args.length != 7) {
      System.err.println(
          "usage: ParallelConsumerPeer BROKERS TOPIC GROUP EXPECTED COST CONCURRENCY ORDERING");
      System.exit(2);
    }
    String brokers = args[0], topic = args[1], group = args[2], cost = args[4];
    long expected = Long.parseLong(args[3]);
    int concurrency = Integer.parseInt(args[5]);
    String ordering = args[6];
    ProcessingOrder order =
        switch (ordering) {
          case "key" -> ProcessingOrder.KEY;
          case "partition" -> ProcessingOrder.PARTITION;
          case "unordered" -> ProcessingOrder.UNORDERED;
          default -> throw new IllegalArgumentException("ordering: key, partition or unordered, not " + ordering);
        };
    Cost work = Cost.parse(cost);

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    // The Parallel Consumer commits itself and refuses a consumer that auto-commits.
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props);

    ParallelConsumerOptions<byte[], byte[]> options =
        ParallelConsumerOptions.<byte[], byte[]>builder()
            .consumer(consumer)
            .ordering(order)
            .maxConcurrency(concurrency)
            .commitMode(CommitMode.PERIODIC_CONSUMER_ASYNCHRONOUS)
            .build();
    ParallelStreamProcessor<byte[], byte[]> processor =
        ParallelStreamProcessor.createEosStreamProcessor(options);

    AtomicLong handled = new AtomicLong();
    AtomicLong first = new AtomicLong();
    AtomicLong last = new AtomicLong();
    CountDownLatch done = new CountDownLatch(1);
    processor.subscribe(List.of(topic));
    processor.poll(
        ctx -> {
          first.compareAndSet(0, System.nanoTime());
          work.run();
          if (handled.incrementAndGet() == expected) {
            last.set(System.nanoTime());
            done.countDown();
          }
        });
    boolean finished = done.await(3600, TimeUnit.SECONDS);
    processor.close();
    if (!finished) {
      System.err.println("parallel-consumer: handled " + handled.get() + " of " + expected);
      System.exit(1);
    }
    double rate = expected / ((last.get() - first.get()) / 1e9);
    System.out.printf("RESULT peer parallel-consumer %s %s msgs_per_s %.0f%n", ordering, cost, rate);
  }
}
