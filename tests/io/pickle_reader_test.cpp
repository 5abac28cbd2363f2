// The restricted unpickler on hand-made and corrupted pickles: clean FormatErrors, no crash, no
// unbounded recursion, tensor views checked against their storage.
#include <gtest/gtest.h>

#include <random>

#include "framework/io/pickle_reader.h"
#include "framework/io/torch_pickle_types.h"
#include "framework/io/zip_archive.h"
#include "framework/util/strings.h"
#include "sdtrain/errors.h"
#include "tests/io/io_test_util.h"

namespace sdtrain {
namespace {

using namespace std::string_literals;

PickleValue load(const std::string& bytes, PersistentLoader loader = nullptr, PickleReaderOptions options = {}) {
  PickleReader reader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.pkl", std::move(loader), options);
  return reader.load();
}

// A loader that makes zero-filled storages of the declared type and size (bounded).
PickleValue fake_storage(const PickleValue& pid) {
  if (pid.kind() != PickleValue::Kind::kTuple || pid.items().size() != 5 ||
      pid.items()[1].kind() != PickleValue::Kind::kGlobal || pid.items()[4].kind() != PickleValue::Kind::kInt) {
    throw FormatError("not a storage reference");
  }
  const auto& f = pid.items();
  const auto dtype = storage_type_dtype(f.at(1).global_name());
  if (!dtype) throw FormatError("bad storage type");
  const int64_t numel = f.at(4).as_int();
  if (numel < 0 || numel > (1 << 20)) throw FormatError("storage too large");
  return PickleValue::from_tensor(torch::zeros({numel}, torch::TensorOptions().dtype(*dtype)));
}

TEST(PickleReader, DecodesPlainValues) {
  // {'a': [1, -2, 3.5, None, True], 'b': (u'x',)} in protocol 2.
  const std::string p = "\x80\x02}q\x00(X\x01\x00\x00\x00" "a]q\x01(K\x01J\xfe\xff\xff\xff"
                        "G\x40\x0c\x00\x00\x00\x00\x00\x00" "N\x88" "eX\x01\x00\x00\x00" "bX\x01\x00\x00\x00x\x85u."s;
  const PickleValue v = load(p);
  const auto& a = v.as_dict().find("a")->items();
  ASSERT_EQ(a.size(), 5u);
  EXPECT_EQ(a[0].as_int(), 1);
  EXPECT_EQ(a[1].as_int(), -2);
  EXPECT_EQ(a[2].as_float(), 3.5);
  EXPECT_TRUE(a[3].is_none());
  EXPECT_TRUE(a[4].as_bool());
  EXPECT_EQ(v.as_dict().find("b")->items().at(0).as_string(), "x");
}

TEST(PickleReader, DeepNestingIsRefusedWithoutStackOverflow) {
  const int n = 1'000'000;
  const std::string deep = "\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + ".";
  EXPECT_FORMAT_ERROR(load(deep), "test.pkl", "nested deeper than 1000");
  // The same structure left in the memo while the result is small is torn down safely too.
  const std::string hidden = "\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a') + "q\x00" "0N."s;
  EXPECT_TRUE(load(hidden).is_none());
  // And on an error path (truncated after building it).
  EXPECT_FORMAT_ERROR(load("\x80\x02" + std::string(n, ']') + std::string(n - 1, 'a')), "truncated");
}

TEST(PickleReader, CyclesAreRefused) {
  EXPECT_FORMAT_ERROR(load("\x80\x02]q\x00h\x00" "a."s), "cycle");
}

TEST(PickleReader, StructuralErrors) {
  EXPECT_FORMAT_ERROR(load("\x80\x02"), "test.pkl", "truncated");
  EXPECT_FORMAT_ERROR(load("\x80\x02X\xff\x00\x00\x00ab."s), "truncated");
  EXPECT_FORMAT_ERROR(load("\x80\x02\xff."), "unknown pickle opcode 0xff");
  EXPECT_FORMAT_ERROR(load("\x80\x02."), "stack underflow");
  EXPECT_FORMAT_ERROR(load("\x80\x02h\x05."s), "memo entry 5 missing");
  EXPECT_FORMAT_ERROR(load("\x80\x02\x82\x01."), "extension registry");
  EXPECT_FORMAT_ERROR(load("\x80\x09N."), "unsupported pickle protocol 9");
  EXPECT_FORMAT_ERROR(load("\x80\x02" "K\x01" "K\x02" "R."), "call arguments are int");
  EXPECT_FORMAT_ERROR(load("\x80\x02}]]s."), "unhashable dict key");
  // Protocol 0's STRING with a \x escape whose digits are not hex (stoi threw invalid_argument).
  EXPECT_FORMAT_ERROR(load("S'\\xzz'\n."), "unsupported escape in STRING");
  EXPECT_EQ(load("S'\\x41'\n.").as_string(), "A");
}

TEST(PickleReader, GlobalsAreRefusedByNameUnlessAllowed) {
  EXPECT_FORMAT_ERROR(load("\x80\x02" "cbuiltins\nexec\n."), "refused global 'builtins.exec'");
  EXPECT_FORMAT_ERROR(load("\x80\x04\x8c\x06shutil\x94\x8c\x06rmtree\x94\x93\x94."), "refused global 'shutil.rmtree'");
  EXPECT_FORMAT_ERROR(load("\x80\x02" "cwebbrowser\nopen\n."), "refused global 'webbrowser.open'");
  EXPECT_FORMAT_ERROR(load("\x80\x02" "cposix\nsystem\n."), "refused global 'posix.system (os.system)'");
  // torch globals outside the allow-list are refused too.
  EXPECT_FORMAT_ERROR(load("\x80\x02" "ctorch\nload\n."), "refused global 'torch.load'");
  // Tolerating known data classes does not tolerate code.
  PickleReaderOptions lenient;
  lenient.policy = GlobalPolicy::kTolerateKnownData;
  EXPECT_FORMAT_ERROR(load("\x80\x02" "cbuiltins\ngetattr\n.", nullptr, lenient), "refused global 'builtins.getattr'");
  const PickleValue path = load("\x80\x02" "cpathlib\nPosixPath\nX\x04\x00\x00\x00/tmp\x85R."s, nullptr, lenient);
  EXPECT_EQ(path.global_name(), "pathlib.PosixPath");
  EXPECT_EQ(path.refused_called(), true);
  // Allowed: OrderedDict, dtypes, sets, bytes through _codecs.encode.
  EXPECT_TRUE(load("\x80\x02" "ccollections\nOrderedDict\n)R.").is_dict());
  EXPECT_EQ(*dtype_from_global(load("\x80\x02" "ctorch\nfloat16\n.").global_name()), torch::kFloat16);
  EXPECT_EQ(load("\x80\x02" "c_codecs\nencode\nX\x04\x00\x00\x00\xc3\xbf\x41\x00X\x06\x00\x00\x00latin1\x86R."s).as_bytes(),
            "\xff\x41\x00"s);
}

TEST(PickleReader, TensorViewsMustStayInsideTheirStorage) {
  auto pickle = [](int offset, int size, int stride) {
    std::string p = "\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\n(" "(X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n"
                    "X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"s;
    p += "K"; p.push_back(static_cast<char>(offset));
    p += "K"; p.push_back(static_cast<char>(size));
    p += "\x85K"; p.push_back(static_cast<char>(stride));
    p += "\x85\x89" "ccollections\nOrderedDict\n)RtR.";
    return p;
  };
  EXPECT_EQ(load(pickle(1, 3, 1), fake_storage).as_tensor().sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(load(pickle(0, 2, 3), fake_storage).as_tensor().stride(0), 3);
  EXPECT_FORMAT_ERROR(load(pickle(2, 4, 1), fake_storage), "reaches element 5 of a storage of 4");
  EXPECT_FORMAT_ERROR(load(pickle(0, 3, 2), fake_storage), "reaches element 4 of a storage of 4");
  EXPECT_EQ(load(pickle(4, 0, 1), fake_storage).as_tensor().numel(), 0);
  EXPECT_FORMAT_ERROR(load(pickle(9, 0, 1), fake_storage), "offset past the storage");
}

TEST(PickleReader, RandomCorruptionOfATorchPickleNeverCrashes) {
  ZipArchive zip(testing::fixture("lightning.ckpt"));
  std::string pkl_name;
  for (const auto& n : zip.names()) if (ends_with(n, "/data.pkl")) pkl_name = n;
  const auto entry = zip.read(pkl_name, /*verify_crc=*/true);
  const std::string good(reinterpret_cast<const char*>(entry.data), entry.size);
  PickleReaderOptions lenient;
  lenient.policy = GlobalPolicy::kTolerateKnownData;
  EXPECT_TRUE(load(good, fake_storage, lenient).is_dict());
  std::mt19937 rng(11);
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    try {
      load(bytes, fake_storage, lenient);
    } catch (const FormatError&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 500);
}

TEST(PickleValue, NumericDictKeysCompareAsInPython) {
  // {2.5: 'a', True: 'b'} then d[1.0] = 'c': True == 1 == 1.0, so 'c' replaces 'b'.
  PickleDict d;
  d.set(PickleValue::from_float(2.5), PickleValue::from_string("a"));
  d.set(PickleValue::from_bool(true), PickleValue::from_string("b"));
  d.set(PickleValue::from_float(1.0), PickleValue::from_string("c"));
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d.find(PickleValue::from_int(1))->as_string(), "c");
  EXPECT_EQ(d.find(PickleValue::from_float(2.5))->as_string(), "a");
  EXPECT_EQ(d.find(PickleValue::from_bool(false)), nullptr);
}

}  // namespace
}  // namespace sdtrain
