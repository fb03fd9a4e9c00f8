/*
 * The reference for rollback/tests/nvlist.rs: packs the test lists with
 * libnvpair itself, and unpacks and re-packs what the Rust encoder wrote.
 *
 *   nvpair_helper pack CASE xdr|native   > packed
 *   nvpair_helper repack xdr|native      < packed > packed
 *
 * Built by the test with gcc against libnvpair.so.3 (no headers needed: the
 * few prototypes are declared here, as in libnvpair's sys/nvpair.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nvlist nvlist_t;
typedef enum { B_FALSE = 0, B_TRUE = 1 } boolean_t;
typedef unsigned char uchar_t;
typedef unsigned int uint_t;
typedef long long hrtime_t;

#define NV_UNIQUE_NAME 0x1
#define NV_ENCODE_NATIVE 0
#define NV_ENCODE_XDR 1

int nvlist_alloc(nvlist_t **, uint_t, int);
void nvlist_free(nvlist_t *);
int nvlist_pack(nvlist_t *, char **, size_t *, int, int);
int nvlist_unpack(char *, size_t, nvlist_t **, int);
int nvlist_add_boolean(nvlist_t *, const char *);
int nvlist_add_boolean_value(nvlist_t *, const char *, boolean_t);
int nvlist_add_byte(nvlist_t *, const char *, uchar_t);
int nvlist_add_int8(nvlist_t *, const char *, int8_t);
int nvlist_add_uint8(nvlist_t *, const char *, uint8_t);
int nvlist_add_int16(nvlist_t *, const char *, int16_t);
int nvlist_add_uint16(nvlist_t *, const char *, uint16_t);
int nvlist_add_int32(nvlist_t *, const char *, int32_t);
int nvlist_add_uint32(nvlist_t *, const char *, uint32_t);
int nvlist_add_int64(nvlist_t *, const char *, int64_t);
int nvlist_add_uint64(nvlist_t *, const char *, uint64_t);
int nvlist_add_hrtime(nvlist_t *, const char *, hrtime_t);
int nvlist_add_double(nvlist_t *, const char *, double);
int nvlist_add_string(nvlist_t *, const char *, const char *);
int nvlist_add_nvlist(nvlist_t *, const char *, nvlist_t *);
int nvlist_add_boolean_array(nvlist_t *, const char *, boolean_t *, uint_t);
int nvlist_add_byte_array(nvlist_t *, const char *, uchar_t *, uint_t);
int nvlist_add_int8_array(nvlist_t *, const char *, int8_t *, uint_t);
int nvlist_add_uint8_array(nvlist_t *, const char *, uint8_t *, uint_t);
int nvlist_add_int16_array(nvlist_t *, const char *, int16_t *, uint_t);
int nvlist_add_uint16_array(nvlist_t *, const char *, uint16_t *, uint_t);
int nvlist_add_int32_array(nvlist_t *, const char *, int32_t *, uint_t);
int nvlist_add_uint32_array(nvlist_t *, const char *, uint32_t *, uint_t);
int nvlist_add_int64_array(nvlist_t *, const char *, int64_t *, uint_t);
int nvlist_add_uint64_array(nvlist_t *, const char *, uint64_t *, uint_t);
int nvlist_add_string_array(nvlist_t *, const char *, char *const *, uint_t);
int nvlist_add_nvlist_array(nvlist_t *, const char *, nvlist_t **, uint_t);

static int failed;
#define CHECK(call) do { if ((call) != 0) { fprintf(stderr, "%s failed\n", #call); failed = 1; } } while (0)

static nvlist_t *
new_list(uint_t flags)
{
	nvlist_t *l = NULL;
	if (nvlist_alloc(&l, flags, 0) != 0) {
		fprintf(stderr, "nvlist_alloc failed\n");
		exit(2);
	}
	return (l);
}

/* The cases; rollback/tests/nvlist.rs builds the same lists. */
static nvlist_t *
build(const char *name)
{
	nvlist_t *l = new_list(NV_UNIQUE_NAME);

	if (strcmp(name, "empty") == 0) {
	} else if (strcmp(name, "rollback") == 0) {
		CHECK(nvlist_add_string(l, "target", "rpool/local/root@blank"));
	} else if (strcmp(name, "destroy-snaps") == 0) {
		nvlist_t *snaps = new_list(NV_UNIQUE_NAME);
		CHECK(nvlist_add_boolean(snaps, "rpool/local/root@later"));
		CHECK(nvlist_add_boolean(snaps, "rpool/local/root@a"));
		CHECK(nvlist_add_nvlist(l, "snaps", snaps));
		nvlist_free(snaps);
	} else if (strcmp(name, "destroy-bookmarks") == 0) {
		CHECK(nvlist_add_boolean(l, "rpool/local/root#mark"));
		CHECK(nvlist_add_boolean(l, "rpool/local/root#bm2"));
	} else if (strcmp(name, "get-bookmarks") == 0) {
		CHECK(nvlist_add_boolean(l, "createtxg"));
	} else if (strcmp(name, "scalars") == 0) {
		CHECK(nvlist_add_boolean(l, "b"));
		CHECK(nvlist_add_boolean_value(l, "t", B_TRUE));
		CHECK(nvlist_add_boolean_value(l, "f", B_FALSE));
		CHECK(nvlist_add_byte(l, "byte", 0x7f));
		CHECK(nvlist_add_int8(l, "i8", 100));
		CHECK(nvlist_add_uint8(l, "u8", 127));
		CHECK(nvlist_add_int16(l, "i16", 1000));
		CHECK(nvlist_add_uint16(l, "u16", 65535));
		CHECK(nvlist_add_int32(l, "i32", -7));
		CHECK(nvlist_add_uint32(l, "u32", 4000000000u));
		CHECK(nvlist_add_int64(l, "i64", -9));
		CHECK(nvlist_add_uint64(l, "u64", UINT64_MAX));
		CHECK(nvlist_add_hrtime(l, "hrtime", 123456789012LL));
		CHECK(nvlist_add_double(l, "double", 1.5));
		CHECK(nvlist_add_string(l, "s", "hello, world"));
		CHECK(nvlist_add_string(l, "empty", ""));
	} else if (strcmp(name, "negative-small") == 0) {
		/* libtirpc sign-extends these in XDR, the kernel and lethe do not. */
		int8_t i8s[] = { -1, 5 };
		uint8_t u8s[] = { 255, 0 };
		int16_t i16s[] = { -300 };
		CHECK(nvlist_add_int8(l, "i8", -1));
		CHECK(nvlist_add_uint8(l, "u8", 200));
		CHECK(nvlist_add_byte(l, "byte", 0x80));
		CHECK(nvlist_add_int16(l, "i16", -2));
		CHECK(nvlist_add_int8_array(l, "i8s", i8s, 2));
		CHECK(nvlist_add_uint8_array(l, "u8s", u8s, 2));
		CHECK(nvlist_add_int16_array(l, "i16s", i16s, 1));
	} else if (strcmp(name, "arrays") == 0) {
		uchar_t bytes[] = { 1, 2, 3, 0xff, 0 };
		boolean_t bools[] = { B_TRUE, B_FALSE, B_TRUE };
		int8_t i8s[] = { 1, 2, 127 };
		uint8_t u8s[] = { 3, 4, 5, 0 };
		int16_t i16s[] = { 0, 32767 };
		uint16_t u16s[] = { 1, 65535 };
		int32_t i32s[] = { -1, 2, INT32_MIN };
		uint32_t u32s[] = { 4000000000u };
		int64_t i64s[] = { -1, INT64_MIN };
		uint64_t u64s[] = { 0, 1, UINT64_MAX };
		char *strs[] = { "a", "", "a longer string" };
		CHECK(nvlist_add_byte_array(l, "bytes", bytes, 5));
		CHECK(nvlist_add_boolean_array(l, "bools", bools, 3));
		CHECK(nvlist_add_int8_array(l, "i8s", i8s, 3));
		CHECK(nvlist_add_uint8_array(l, "u8s", u8s, 4));
		CHECK(nvlist_add_int16_array(l, "i16s", i16s, 2));
		CHECK(nvlist_add_uint16_array(l, "u16s", u16s, 2));
		CHECK(nvlist_add_int32_array(l, "i32s", i32s, 3));
		CHECK(nvlist_add_uint32_array(l, "u32s", u32s, 1));
		CHECK(nvlist_add_int64_array(l, "i64s", i64s, 2));
		CHECK(nvlist_add_uint64_array(l, "u64s", u64s, 3));
		CHECK(nvlist_add_string_array(l, "strs", strs, 3));
	} else if (strcmp(name, "empty-arrays") == 0) {
		CHECK(nvlist_add_byte_array(l, "bytes", NULL, 0));
		CHECK(nvlist_add_boolean_array(l, "bools", NULL, 0));
		CHECK(nvlist_add_int8_array(l, "i8s", NULL, 0));
		CHECK(nvlist_add_uint16_array(l, "u16s", NULL, 0));
		CHECK(nvlist_add_int32_array(l, "i32s", NULL, 0));
		CHECK(nvlist_add_uint64_array(l, "u64s", NULL, 0));
		CHECK(nvlist_add_string_array(l, "strs", NULL, 0));
		CHECK(nvlist_add_nvlist_array(l, "lists", NULL, 0));
	} else if (strcmp(name, "nested") == 0) {
		nvlist_t *inner = new_list(NV_UNIQUE_NAME);
		nvlist_t *mid = new_list(NV_UNIQUE_NAME);
		nvlist_t *outer = new_list(NV_UNIQUE_NAME);
		nvlist_t *a = new_list(NV_UNIQUE_NAME);
		nvlist_t *b = new_list(NV_UNIQUE_NAME);
		nvlist_t *c = new_list(NV_UNIQUE_NAME);
		nvlist_t *e = new_list(NV_UNIQUE_NAME);
		nvlist_t *arr[3];
		CHECK(nvlist_add_uint64(inner, "x", 1));
		CHECK(nvlist_add_string_array(inner, "names", (char *[]){ "p", "q" }, 2));
		CHECK(nvlist_add_nvlist(mid, "inner", inner));
		CHECK(nvlist_add_nvlist(outer, "mid", mid));
		CHECK(nvlist_add_string(outer, "s", "v"));
		CHECK(nvlist_add_boolean(a, "a"));
		CHECK(nvlist_add_string(c, "c", "d"));
		CHECK(nvlist_add_nvlist(b, "b", c));
		arr[0] = a;
		arr[1] = b;
		arr[2] = inner;
		CHECK(nvlist_add_nvlist(l, "outer", outer));
		CHECK(nvlist_add_nvlist_array(l, "arr", arr, 3));
		CHECK(nvlist_add_nvlist(l, "empty", e));
		CHECK(nvlist_add_int32(l, "after", 3));
		nvlist_free(inner);
		nvlist_free(mid);
		nvlist_free(outer);
		nvlist_free(a);
		nvlist_free(b);
		nvlist_free(c);
		nvlist_free(e);
	} else if (strcmp(name, "names") == 0) {
		char longname[301];
		memset(longname, 'n', 300);
		longname[300] = '\0';
		CHECK(nvlist_add_boolean(l, ""));
		CHECK(nvlist_add_uint64(l, "a", 1));
		CHECK(nvlist_add_uint64(l, "ab", 2));
		CHECK(nvlist_add_uint64(l, "abc", 3));
		CHECK(nvlist_add_uint64(l, "abcd", 4));
		CHECK(nvlist_add_uint64(l, "abcde", 5));
		CHECK(nvlist_add_uint64(l, "abcdefgh", 8));
		CHECK(nvlist_add_uint64(l, "abcdefghi", 9));
		CHECK(nvlist_add_string(l, longname, "grün"));
	} else if (strcmp(name, "props-answer") == 0) {
		/* How ZFS_IOC_OBJSET_STATS answers: each property {"value", "source"}. */
		nvlist_t *clones = new_list(NV_UNIQUE_NAME);
		nvlist_t *cv = new_list(NV_UNIQUE_NAME);
		nvlist_t *txg = new_list(NV_UNIQUE_NAME);
		nvlist_t *refs = new_list(NV_UNIQUE_NAME);
		CHECK(nvlist_add_boolean(clones, "rpool/other"));
		CHECK(nvlist_add_nvlist(cv, "value", clones));
		CHECK(nvlist_add_uint64(txg, "value", 42));
		CHECK(nvlist_add_string(txg, "source", ""));
		CHECK(nvlist_add_uint64(refs, "value", 0));
		CHECK(nvlist_add_nvlist(l, "createtxg", txg));
		CHECK(nvlist_add_nvlist(l, "clones", cv));
		CHECK(nvlist_add_nvlist(l, "userrefs", refs));
		nvlist_free(clones);
		nvlist_free(cv);
		nvlist_free(txg);
		nvlist_free(refs);
	} else if (strcmp(name, "replace") == 0) {
		CHECK(nvlist_add_uint64(l, "a", 1));
		CHECK(nvlist_add_boolean(l, "b"));
		CHECK(nvlist_add_uint64(l, "a", 2));
	} else if (strcmp(name, "non-unique") == 0) {
		nvlist_free(l);
		l = new_list(0);
		CHECK(nvlist_add_uint64(l, "a", 1));
		CHECK(nvlist_add_uint64(l, "a", 2));
	} else {
		fprintf(stderr, "unknown case %s\n", name);
		exit(2);
	}
	return (l);
}

static int
encoding(const char *s)
{
	if (strcmp(s, "xdr") == 0)
		return (NV_ENCODE_XDR);
	if (strcmp(s, "native") == 0)
		return (NV_ENCODE_NATIVE);
	fprintf(stderr, "unknown encoding %s\n", s);
	exit(2);
}

static int
emit(nvlist_t *l, int enc)
{
	char *buf = NULL;
	size_t len = 0;
	int err = nvlist_pack(l, &buf, &len, enc, 0);
	if (err != 0) {
		fprintf(stderr, "nvlist_pack: error %d\n", err);
		return (1);
	}
	fwrite(buf, 1, len, stdout);
	free(buf);
	return (0);
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "pack") == 0) {
		nvlist_t *l = build(argv[2]);
		int r = emit(l, encoding(argv[3]));
		nvlist_free(l);
		return (failed ? 1 : r);
	}
	if (argc == 3 && strcmp(argv[1], "repack") == 0) {
		static char in[1 << 20];
		size_t n = fread(in, 1, sizeof (in), stdin);
		nvlist_t *l = NULL;
		int err = nvlist_unpack(in, n, &l, 0);
		if (err != 0) {
			fprintf(stderr, "nvlist_unpack: error %d\n", err);
			return (1);
		}
		err = emit(l, encoding(argv[2]));
		nvlist_free(l);
		return (err);
	}
	fprintf(stderr, "usage: %s pack CASE xdr|native | repack xdr|native\n", argv[0]);
	return (2);
}
