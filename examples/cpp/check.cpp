// check.cpp: checks bearer tokens with the C++ wrapper (tokenchecker.hpp), one per line of
// standard input.
//
//   check [CONFIG_FILE]
//
// The configuration (JSON, see the README) comes from CONFIG_FILE, or else from TC_CONFIG (the
// JSON itself) or TC_CONFIG_FILE (a path) in the environment. For every non-empty line it prints
// "<line number> <status name> <result or error document>" (never the token). Exit status: 0 when
// every token was valid, 1 when one was not, 2 on a usage or configuration error.
//
// Build with CMake (CMakeLists.txt next to this file) against an installed tokenchecker:
//   cmake -S examples/cpp -B build -DCMAKE_PREFIX_PATH=/usr/local && cmake --build build

#include <tokenchecker.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace {

std::string load_config(int argc, char **argv) {
    const char *path = argc == 2 ? argv[1] : std::getenv("TC_CONFIG_FILE");
    if (path != nullptr) {
        std::ifstream in(path, std::ios::binary);
        if (!in)
            throw std::runtime_error(std::string("cannot read ") + path);
        std::ostringstream text;
        text << in.rdbuf();
        return text.str();
    }
    if (const char *json = std::getenv("TC_CONFIG"))
        return json;
    throw std::runtime_error("no configuration: give CONFIG_FILE, TC_CONFIG or TC_CONFIG_FILE");
}

} // namespace

int main(int argc, char **argv) {
    if (argc > 2) {
        std::cerr << "usage: " << argv[0] << " [CONFIG_FILE] < tokens\n";
        return 2;
    }
    std::optional<tokenchecker::Checker> checker;
    try {
        checker.emplace(load_config(argc, argv)); // also checks the library's ABI
    } catch (const tokenchecker::Error &e) {
        // e.code() is the tc_status, e.json() the library's error document.
        std::cerr << "cannot create the checker: " << e.what() << "\n";
        return 2;
    } catch (const std::exception &e) {
        std::cerr << e.what() << "\n";
        return 2;
    }

    bool all_valid = true;
    std::string line;
    for (unsigned long n = 1; std::getline(std::cin, line); n++) {
        // Surrounding white space (a CRLF line end, an indented line) is not part of the token.
        const auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos)
            continue;
        const std::string token = line.substr(first, line.find_last_not_of(" \t\r") - first + 1);
        // The non-throwing form: an invalid token is an expected outcome here, not an exception.
        tokenchecker::Result r = checker->check(token, std::nothrow);
        std::cout << n << ' ' << r.status_name() << ' ' << r.json << std::endl;
        all_valid = all_valid && r.ok();
    }
    return all_valid ? 0 : 1;
}
