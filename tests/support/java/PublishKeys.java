// A Java publisher with the Kafka client's defaults: sends one record per key given on the
// command line to a topic, and prints "key partition" for each acknowledged record. The tests
// compare these partitions with the ones our Python producers chose for the same keys.
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class PublishKeys {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 2; i < args.length; i++) {
                RecordMetadata meta = producer.send(
                    new ProducerRecord<>(args[1], args[i], "java")).get();
                System.out.println(args[i] + " " + meta.partition());
            }
        }
    }
}
