// Which library the C++ standard library's functions bind to at run time. Some torch wheels
// (2.11.0, the GPU machines' torch) export the std::filesystem functions they link statically; a
// program that loads libtorch ahead of libstdc++ calls those copies, and their remove_all crashes.
// Every sdtrain program is linked with libstdc++ first (sdtrain_target_defaults), which these
// tests check in a program linked like the others. They fail, against such a wheel, without it.
#include <gtest/gtest.h>

#include <dlfcn.h>
#include <link.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {

/// The file names of the loaded objects in the dynamic linker's global lookup order (the program,
/// then its dependencies breadth-first), which decides the library a symbol binds to.
std::vector<std::string> loaded_objects_in_lookup_order() {
  std::vector<std::string> names;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        static_cast<std::vector<std::string>*>(out)->emplace_back(info->dlpi_name);
        return 0;
      },
      &names);
  return names;
}

/// The index in `names` of the first object whose file name contains `fragment`, or -1.
int first_index_containing(const std::vector<std::string>& names, const std::string& fragment) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (std::filesystem::path(names[i]).filename().string().find(fragment) != std::string::npos) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

TEST(LibraryBinding, LibstdcxxPrecedesTorchInTheLookupOrder) {
  const std::vector<std::string> names = loaded_objects_in_lookup_order();
  const int libstdcxx = first_index_containing(names, "libstdc++.so");
  ASSERT_GE(libstdcxx, 0) << "libstdc++ is not loaded";
  for (const char* torch_library : {"libtorch", "libc10"}) {
    const int torch = first_index_containing(names, torch_library);
    ASSERT_GE(torch, 0) << torch_library << " is not loaded";
    EXPECT_LT(libstdcxx, torch) << names[static_cast<size_t>(torch)]
                                << " comes before libstdc++ in the lookup order";
  }
}

TEST(LibraryBinding, FilesystemFunctionsBindToLibstdcxx) {
  // remove_all (both overloads), the function the torch 2.11 copies crash in, and a few more of
  // those the product calls; RTLD_DEFAULT finds the definition an ordinary call binds to.
  for (const char* symbol : {"_ZNSt10filesystem10remove_allERKNS_7__cxx114pathE",
                             "_ZNSt10filesystem10remove_allERKNS_7__cxx114pathERSt10error_code",
                             "_ZNSt10filesystem18create_directoriesERKNS_7__cxx114pathE",
                             "_ZNSt10filesystem6renameERKNS_7__cxx114pathES3_"}) {
    void* address = dlsym(RTLD_DEFAULT, symbol);
    ASSERT_NE(address, nullptr) << symbol << " is not defined in this program";
    Dl_info info{};
    ASSERT_NE(dladdr(address, &info), 0) << symbol;
    EXPECT_NE(std::string(info.dli_fname).find("libstdc++.so"), std::string::npos)
        << symbol << " binds to " << info.dli_fname;
  }
}

TEST(LibraryBinding, RemoveAllDeletesANestedTree) {
  const std::filesystem::path root = test::scratch_dir() / "tree";
  std::filesystem::create_directories(root / "a" / "b");
  std::ofstream(root / "a" / "b" / "file.txt") << "x";
  std::ofstream(root / "top.txt") << "y";
  EXPECT_EQ(std::filesystem::remove_all(root), 5u);  // 3 folders and 2 files
  EXPECT_FALSE(std::filesystem::exists(root));
}

}  // namespace
}  // namespace sdtrain
