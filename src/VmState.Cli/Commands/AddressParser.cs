using VmState.Memory;

namespace VmState.Cli.Commands;

/// <summary>Parses addresses and lengths given as 0x-prefixed hex, plain decimal, or with a k/m/g suffix.</summary>
internal static class AddressParser
{
    /// <summary>The library's parser (<see cref="AddressText"/>), which symbol expressions share with the CLI.</summary>
    public static ulong Parse(string text, string what) => AddressText.Parse(text, what);
}
