// Which local addresses listen on a TCP port, read from the kernel's socket
// tables (Linux only): proof of where a listener is bound, without sending
// traffic anywhere.

const LISTEN = "0A";

function decode(hex: string): string {
  if (hex.length === 8) {
    return hex.match(/../g)!.reverse().map((byte) => parseInt(byte, 16)).join(".");
  }
  // IPv6: four 32-bit words, each in host (little-endian) order.
  const words = hex.match(/.{8}/g)!.map((word) => word.match(/../g)!.reverse().join(""));
  const groups = words.join("").match(/.{4}/g)!.map((group) => parseInt(group, 16).toString(16));
  return `[${groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::")}]`;
}

/** Local addresses in LISTEN state on `port`, such as `127.0.0.1` or `[::1]`. */
export async function listeningAddresses(port: number): Promise<string[]> {
  const found: string[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    // Deno lets only --allow-all read /proc/net directly; cat needs --allow-run.
    const { stdout } = await new Deno.Command("cat", { args: [table], stderr: "null" }).output();
    const text = new TextDecoder().decode(stdout);
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [address, portHex] = (fields[1] ?? "").split(":");
      if (fields[3] === LISTEN && address && parseInt(portHex ?? "", 16) === port) {
        found.push(decode(address));
      }
    }
  }
  return found;
}
