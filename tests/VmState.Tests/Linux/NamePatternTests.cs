using System.Diagnostics;
using VmState.Linux;

namespace VmState.Tests.Linux;

/// <summary>The name filter of <c>vmstate symbols</c> (and later views): a whole-name glob, or a substring.</summary>
public sealed class NamePatternTests
{
    [Theory]
    [InlineData("init_task", "init_*", true)]
    [InlineData("x_init_task", "init_*", false)]
    [InlineData("init_task", "*task", true)]
    [InlineData("init_task", "*_ta?k", true)]
    [InlineData("init_task", "init_ta?", false)]
    [InlineData("init_task", "i*t*k", true)]
    [InlineData("init_task", "*", true)]
    [InlineData("", "*", true)]
    [InlineData("", "?", false)]
    [InlineData("a", "**a**", true)]
    [InlineData("init_task", "it_t", true)]   // no wildcard: a substring
    [InlineData("init_task", "Init", false)]  // ordinal, case-sensitive
    [InlineData("init_task", "", true)]
    public void GlobsMatchWholeNamesAndPlainPatternsAreSubstrings(string name, string pattern, bool matches)
    {
        var p = new NamePattern(pattern);
        Assert.Equal(matches, p.IsMatch(name));
        Assert.Equal(pattern.Contains('*', StringComparison.Ordinal) || pattern.Contains('?', StringComparison.Ordinal), p.IsGlob);
        Assert.Equal(pattern, p.ToString());
    }

    [Fact]
    public void AHostileNameCannotMakeTheMatchExponential()
    {
        string name = new('a', 20_000);
        var p = new NamePattern(string.Concat(Enumerable.Repeat("*a", 30)) + "*b");
        var clock = Stopwatch.StartNew();
        Assert.False(p.IsMatch(name));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"{clock.Elapsed}");
    }

    [Fact]
    public void TheGlobAgreesWithARegexOnRandomInputs()
    {
        var r = new Random(1234);
        const string Alphabet = "ab_";
        for (int i = 0; i < 2000; i++)
        {
            string name = new([.. Enumerable.Range(0, r.Next(0, 8)).Select(_ => Alphabet[r.Next(Alphabet.Length)])]);
            string pattern = new([.. Enumerable.Range(0, r.Next(1, 6)).Select(_ => "ab_*?"[r.Next(5)])]);
            if (!pattern.Contains('*', StringComparison.Ordinal) && !pattern.Contains('?', StringComparison.Ordinal))
            {
                continue;
            }

            string regex = "^" + string.Concat(pattern.Select(c => c switch { '*' => ".*", '?' => ".", _ => System.Text.RegularExpressions.Regex.Escape(c.ToString()) })) + "$";
            bool expected = System.Text.RegularExpressions.Regex.IsMatch(name, regex, System.Text.RegularExpressions.RegexOptions.Singleline);
            Assert.True(expected == new NamePattern(pattern).IsMatch(name), $"'{name}' ~ '{pattern}'");
        }
    }
}
