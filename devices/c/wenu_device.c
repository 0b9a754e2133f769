/*
 * A reference Wenu device in C: what docs/devices.md says, with the libraries
 * real firmware uses (libmosquitto for MQTT, OpenSSL for AES-256-GCM and
 * random nonces). It shares no code with Wenu.
 *
 *   cc -O2 -o wenu_device wenu_device.c -lmosquitto -lcrypto
 *
 *   # seal one plaintext with a given nonce and print the envelope in hex
 *   # (how the tests compare it with docs/test-vectors.json):
 *   wenu_device --seal --device D --key-id N --key BASE64 --nonce HEX 'PLAINTEXT'
 *
 *   # send COUNT messages at QoS 1, keeping each until its PUBACK and sending
 *   # what is unacknowledged again after a reconnect:
 *   wenu_device --device D --password P --key-id N --key BASE64 \
 *     [--host H] [--port P] [--cafile CA] [--count N] [--interval-ms MS] [--seq-file F]
 *
 * The readings are made up but predictable: temp-1 (temperature, degC) =
 * 20 + (seq % 10) / 4 and hum-1 (humidity, %RH) = 40 + seq % 7. At the end
 * it prints {"device":...,"sent":...,"acked":...,"unacked":...,"seqs":[first,last]}.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define VERSION 1
#define HEADER_LEN 17 /* version, key id, nonce */
#define TAG_LEN 16
#define MAX_PLAINTEXT 1024
#define MAX_ENVELOPE (HEADER_LEN + MAX_PLAINTEXT + TAG_LEN)
#define MAX_MESSAGES 10000

struct options {
    const char *device, *password, *key_b64, *nonce_hex, *host, *cafile, *seq_file, *plaintext;
    uint32_t key_id;
    int port, count, interval_ms;
    bool seal_only;
};

/* A message kept until its PUBACK (the offline buffer). */
struct message {
    uint64_t seq;
    unsigned char envelope[MAX_ENVELOPE];
    size_t len;
    int mid;        /* of its latest sending; 0 while not sent on this connection */
    bool acked;
};

static struct {
    pthread_mutex_t lock;
    struct mosquitto *mosq;
    struct message *messages;
    int count;      /* messages made so far */
    int acked;
    char topic[128];
} state = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void die(const char *what) {
    fprintf(stderr, "wenu_device: %s\n", what);
    exit(2);
}

/* The device's 32-byte key from its base64 form in the fleet file. */
static void decode_key(const char *b64, unsigned char key[32]) {
    unsigned char out[48];
    size_t len = strlen(b64);
    if (len != 44) die("the key must be 44 characters of base64 (32 bytes)");
    if (EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len) < 32) die("the key is not base64");
    memcpy(key, out, 32);
}

static void decode_hex(const char *hex, unsigned char *out, size_t n) {
    if (strlen(hex) != 2 * n) die("wrong hex length");
    for (size_t i = 0; i < n; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) die("not hex");
        out[i] = (unsigned char)byte;
    }
}

/*
 * envelope = version | key id (big-endian) | nonce | ciphertext | tag,
 * AES-256-GCM with AAD = version | key id | device id. Returns its length.
 */
static size_t seal(const char *device_id, uint32_t key_id, const unsigned char key[32],
                   const unsigned char nonce[12], const unsigned char *plaintext, size_t plaintext_len,
                   unsigned char *envelope) {
    unsigned char aad[5 + 64];
    size_t id_len = strlen(device_id);
    if (id_len > 64 || plaintext_len > MAX_PLAINTEXT) die("device id or plaintext too long");
    envelope[0] = VERSION;
    envelope[1] = (unsigned char)(key_id >> 24);
    envelope[2] = (unsigned char)(key_id >> 16);
    envelope[3] = (unsigned char)(key_id >> 8);
    envelope[4] = (unsigned char)key_id;
    memcpy(envelope + 5, nonce, 12);
    memcpy(aad, envelope, 5);
    memcpy(aad + 5, device_id, id_len);

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0, total = 0;
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)(5 + id_len)) != 1 ||
        EVP_EncryptUpdate(ctx, envelope + HEADER_LEN, &len, plaintext, (int)plaintext_len) != 1)
        die("AES-GCM failed");
    total = len;
    if (EVP_EncryptFinal_ex(ctx, envelope + HEADER_LEN + total, &len) != 1) die("AES-GCM failed");
    total += len;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, envelope + HEADER_LEN + total) != 1)
        die("AES-GCM tag failed");
    EVP_CIPHER_CTX_free(ctx);
    return HEADER_LEN + (size_t)total + TAG_LEN;
}

/* The next sequence number, kept across restarts: written before it is used. */
static uint64_t take_seq(const char *path, uint64_t *next) {
    uint64_t seq = (*next)++;
    if (path) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) die("cannot write the sequence file");
        fprintf(f, "%" PRIu64 "\n", *next);
        fflush(f);
        fsync(fileno(f));
        fclose(f);
        if (rename(tmp, path) != 0) die("cannot replace the sequence file");
    }
    return seq;
}

static uint64_t load_seq(const char *path) {
    uint64_t next = 1;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (f) {
        if (fscanf(f, "%" SCNu64, &next) != 1) next = 1;
        fclose(f);
    }
    return next;
}

/*
 * Called with the lock held. While disconnected libmosquitto still queues
 * the message (and says MOSQ_ERR_NO_CONN); a reconnect sends all again anyway.
 */
static void send_message(struct message *m) {
    int mid = 0;
    mosquitto_publish(state.mosq, &mid, state.topic, (int)m->len, m->envelope, 1, false);
    m->mid = mid;
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    (void)obj;
    if (rc != 0) {
        fprintf(stderr, "connection refused: %s\n", mosquitto_connack_string(rc));
        return;
    }
    pthread_mutex_lock(&state.lock);
    /* A new connection: everything unacknowledged goes again, oldest first. */
    for (int i = 0; i < state.count; i++) {
        state.messages[i].mid = 0;
        if (!state.messages[i].acked) send_message(&state.messages[i]);
    }
    pthread_mutex_unlock(&state.lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
    (void)mosq;
    (void)obj;
    pthread_mutex_lock(&state.lock);
    for (int i = 0; i < state.count; i++) {
        struct message *m = &state.messages[i];
        if (m->mid == mid && !m->acked) {
            m->acked = true;
            state.acked++;
            break;
        }
    }
    pthread_mutex_unlock(&state.lock);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int run(const struct options *o) {
    unsigned char key[32];
    decode_key(o->key_b64, key);
    if (o->count < 0 || o->count > MAX_MESSAGES) die("--count is 0 to 10000");
    state.messages = calloc((size_t)o->count + 1, sizeof(struct message));
    if (!state.messages) die("out of memory");
    snprintf(state.topic, sizeof state.topic, "wenu/%s/telemetry", o->device);

    mosquitto_lib_init();
    state.mosq = mosquitto_new(o->device, true, NULL);
    if (!state.mosq) die("mosquitto_new failed");
    mosquitto_username_pw_set(state.mosq, o->device, o->password);
    if (o->cafile && mosquitto_tls_set(state.mosq, o->cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS)
        die("cannot use the CA file");
    mosquitto_reconnect_delay_set(state.mosq, 1, 5, false);
    mosquitto_connect_callback_set(state.mosq, on_connect);
    mosquitto_publish_callback_set(state.mosq, on_publish);
    if (mosquitto_connect_async(state.mosq, o->host, o->port, 30) != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "first connection attempt failed; retrying\n");
    if (mosquitto_loop_start(state.mosq) != MOSQ_ERR_SUCCESS) die("cannot start the MQTT loop");

    uint64_t next = load_seq(o->seq_file), first = 0, last = 0;
    for (int i = 0; i < o->count; i++) {
        uint64_t seq = take_seq(o->seq_file, &next);
        if (i == 0) first = seq;
        last = seq;
        char plaintext[MAX_PLAINTEXT];
        int n = snprintf(plaintext, sizeof plaintext,
                         "{\"seq\":%" PRIu64 ",\"ts\":%" PRId64 ",\"readings\":["
                         "{\"sensor\":\"temp-1\",\"kind\":\"temperature\",\"value\":%.17g,\"unit\":\"degC\"},"
                         "{\"sensor\":\"hum-1\",\"kind\":\"humidity\",\"value\":%.17g,\"unit\":\"%%RH\"}]}",
                         seq, now_ms(), 20.0 + (double)(seq % 10) / 4.0, 40.0 + (double)(seq % 7));
        unsigned char nonce[12];
        if (RAND_bytes(nonce, sizeof nonce) != 1) die("no random nonce");
        pthread_mutex_lock(&state.lock);
        struct message *m = &state.messages[state.count++];
        m->seq = seq;
        m->len = seal(o->device, o->key_id, key, nonce, (const unsigned char *)plaintext, (size_t)n, m->envelope);
        send_message(m);
        pthread_mutex_unlock(&state.lock);
        usleep((useconds_t)o->interval_ms * 1000);
    }

    /* Wait up to 60 s for the last PUBACKs. */
    int unacked = 0;
    for (int waited = 0; waited < 600; waited++) {
        pthread_mutex_lock(&state.lock);
        unacked = state.count - state.acked;
        pthread_mutex_unlock(&state.lock);
        if (unacked == 0) break;
        usleep(100 * 1000);
    }
    mosquitto_disconnect(state.mosq);
    mosquitto_loop_stop(state.mosq, false);
    mosquitto_destroy(state.mosq);
    mosquitto_lib_cleanup();
    printf("{\"device\":\"%s\",\"sent\":%d,\"acked\":%d,\"unacked\":%d,\"seqs\":[%" PRIu64 ",%" PRIu64 "]}\n",
           o->device, o->count, state.acked, unacked, first, last);
    return unacked == 0 ? 0 : 1;
}

static int seal_only(const struct options *o) {
    unsigned char key[32], nonce[12], envelope[MAX_ENVELOPE];
    if (!o->device || !o->key_b64 || !o->nonce_hex || !o->plaintext) die("--seal needs --device, --key, --nonce and a plaintext");
    decode_key(o->key_b64, key);
    decode_hex(o->nonce_hex, nonce, sizeof nonce);
    size_t len = seal(o->device, o->key_id, key, nonce, (const unsigned char *)o->plaintext, strlen(o->plaintext), envelope);
    for (size_t i = 0; i < len; i++) printf("%02x", envelope[i]);
    printf("\n");
    return 0;
}

int main(int argc, char **argv) {
    struct options o = {.host = "127.0.0.1", .port = 1883, .count = 10, .interval_ms = 1000, .key_id = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = true;
        if (!strcmp(arg, "--seal")) o.seal_only = true, takes_value = false;
        else if (!value && arg[0] == '-') die("an option lacks its value");
        else if (!strcmp(arg, "--device")) o.device = value;
        else if (!strcmp(arg, "--password")) o.password = value;
        else if (!strcmp(arg, "--key")) o.key_b64 = value;
        else if (!strcmp(arg, "--key-id")) o.key_id = (uint32_t)strtoul(value, NULL, 10);
        else if (!strcmp(arg, "--nonce")) o.nonce_hex = value;
        else if (!strcmp(arg, "--host")) o.host = value;
        else if (!strcmp(arg, "--port")) o.port = atoi(value);
        else if (!strcmp(arg, "--cafile")) o.cafile = value;
        else if (!strcmp(arg, "--count")) o.count = atoi(value);
        else if (!strcmp(arg, "--interval-ms")) o.interval_ms = atoi(value);
        else if (!strcmp(arg, "--seq-file")) o.seq_file = value;
        else if (arg[0] != '-') o.plaintext = arg, takes_value = false;
        else die("unknown option (see the comment at the top of wenu_device.c)");
        if (takes_value) i++;
    }
    if (o.seal_only) return seal_only(&o);
    if (!o.device || !o.password || !o.key_b64) die("--device, --password and --key are needed");
    return run(&o);
}
