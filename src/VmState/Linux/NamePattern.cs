namespace VmState.Linux;

/// <summary>
/// A name filter as the symbol and process views take it: a glob matched against the whole name (<c>*</c> any run
/// of characters, <c>?</c> one character), or, without wildcards, a substring of the name. Case-sensitive (ordinal).
/// </summary>
public sealed class NamePattern
{
    /// <summary>A filter for <paramref name="pattern"/>.</summary>
    public NamePattern(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        Pattern = pattern;
        IsGlob = pattern.AsSpan().IndexOfAny('*', '?') >= 0;
    }

    /// <summary>The pattern as given.</summary>
    public string Pattern { get; }

    /// <summary>True when the pattern has wildcards (and is matched against the whole name).</summary>
    public bool IsGlob { get; }

    /// <summary>True when <paramref name="name"/> matches.</summary>
    public bool IsMatch(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return IsGlob ? GlobMatch(name, Pattern) : name.Contains(Pattern, StringComparison.Ordinal);
    }

    /// <inheritdoc/>
    public override string ToString() => Pattern;

    /// <summary>
    /// The glob match, with backtracking to the last <c>*</c> only (linear in the name for each star, so a hostile
    /// name cannot make it exponential).
    /// </summary>
    private static bool GlobMatch(string name, string pattern)
    {
        int n = 0, p = 0, star = -1, mark = 0;
        while (n < name.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == name[n]))
            {
                n++;
                p++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = n;
            }
            else if (star >= 0)
            {
                p = star + 1;
                n = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
