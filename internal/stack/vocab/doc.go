// Package vocab holds the words of the compose specification that both
// the stack loader and the engine read, so that neither imports the other:
// pull_policy values and their periods, the service keys gitopsd cannot
// create, and the bound on a secret's or config's file. The loader refuses
// what these reject, naming the file and line; the engine acts on what they
// accept.
package vocab
