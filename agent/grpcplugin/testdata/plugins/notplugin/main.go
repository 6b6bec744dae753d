// Command notplugin is an ordinary program, not a plugin.
package main

import "fmt"

func main() { fmt.Println("hello, I am not a plugin") }
