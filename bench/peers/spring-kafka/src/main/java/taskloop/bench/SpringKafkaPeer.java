package taskloop.bench;

import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.listener.ConcurrentMessageListenerContainer;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.MessageListener;

/**
 * Consumes a topic from earliest with Spring Kafka (no Spring Boot): a
 * ConcurrentMessageListenerContainer with one consumer thread per partition and a record
 * listener, the way Spring users scale a consumer. Each message costs what bench/peers.sh
 * asks (noop, sleep_ms=N or spin_us=N). Prints `RESULT peer spring-kafka partition COST
 * msgs_per_s N`, timed from the first message handled to the last. The container keeps
 * each partition in order: that is the only ordering it has, and its concurrency is the
 * number of consumer threads, so CONCURRENCY is reported, not used.
 * Usage: SpringKafkaPeer BROKERS TOPIC GROUP EXPECTED COST PARTITIONS
 */
public final class SpringKafkaPeer {
  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: SpringKafkaPeer BROKERS TOPIC GROUP EXPECTED COST PARTITIONS");
      System.exit(2);
    }
    String brokers = args[0], topic = args[1], group = args[2], cost = args[4];
    long expected = Long.parseLong(args[3]);
    int partitions = Integer.parseInt(args[5]);
    Cost work = Cost.parse(cost);

    Map<String, Object> props =
        Map.of(
            ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers,
            ConsumerConfig.GROUP_ID_CONFIG, group,
            ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest",
            ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class,
            ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
    AtomicLong handled = new AtomicLong();
    AtomicLong first = new AtomicLong();
    AtomicLong last = new AtomicLong();
    CountDownLatch done = new CountDownLatch(1);
    ContainerProperties container = new ContainerProperties(topic);
    container.setMessageListener(
        (MessageListener<byte[], byte[]>)
            record -> {
              first.compareAndSet(0, System.nanoTime());
              work.run();
              if (handled.incrementAndGet() == expected) {
                last.set(System.nanoTime());
                done.countDown();
              }
            });
    ConcurrentMessageListenerContainer<byte[], byte[]> listeners =
        new ConcurrentMessageListenerContainer<>(
            new DefaultKafkaConsumerFactory<byte[], byte[]>(props), container);
    listeners.setConcurrency(partitions);
    listeners.start();
    boolean finished = done.await(3600, TimeUnit.SECONDS);
    listeners.stop();
    if (!finished) {
      System.err.println("spring-kafka: handled " + handled.get() + " of " + expected);
      System.exit(1);
    }
    double rate = expected / ((last.get() - first.get()) / 1e9);
    System.out.printf("RESULT peer spring-kafka partition %s msgs_per_s %.0f%n", cost, rate);
  }
}
