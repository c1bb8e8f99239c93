// Checker refuses a library of another ABI generation. This program defines its own
// tc_abi_version() (which the linker prefers over the shared library's) returning a different
// generation, and expects tokenchecker::AbiMismatch from the constructor, before tc_new is called.
#include <tokenchecker.hpp>

#include <iostream>
#include <string>

extern "C" uint32_t tc_abi_version(void) { return TOKENCHECKER_ABI_VERSION + 41; }

int main() {
    try {
        tokenchecker::Checker checker("{}");
    } catch (const tokenchecker::AbiMismatch &e) {
        const std::string what = e.what();
        bool ok = e.code() == TC_INVALID_ARGUMENT && e.header_abi() == TOKENCHECKER_ABI_VERSION &&
                  e.library_abi() == TOKENCHECKER_ABI_VERSION + 41 && what.find("ABI mismatch") != std::string::npos;
        std::cout << (ok ? "ok" : "not ok") << " - AbiMismatch: " << what << std::endl;
        return ok ? 0 : 1;
    } catch (const std::exception &e) {
        std::cout << "not ok - expected AbiMismatch, got " << e.what() << std::endl;
        return 1;
    }
    std::cout << "not ok - a checker was created despite the ABI mismatch" << std::endl;
    return 1;
}
