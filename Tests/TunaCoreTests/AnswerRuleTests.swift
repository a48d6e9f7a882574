import XCTest
@testable import TunaCore

/// Answer extraction and comparison on a table of real-looking solutions (docs/job-spec.md, `eval.answer`).
final class AnswerRuleTests: XCTestCase {
    let boxedMath = AnswerRule(extract: .boxed, compare: .math)

    func testBoxedExtraction() {
        let cases: [(String, String?)] = [
            ("So the probability is $\\boxed{\\frac{3}{4}}$.", "\\frac{3}{4}"),
            ("$\\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt{3}}{2}"),             // nested braces
            ("first \\boxed{2}, then corrected: \\boxed{3}", "3"),                    // the last box
            ("\\boxed{\\boxed{4}}", "4"),
            ("The answer is \\boxed{12", nil),                                       // cut off by the token limit
            ("so $\\boxed 5$ it is", "5"),
            ("\\fbox{7}", "7"),
            ("no box here, 42", nil),
            ("\\boxed{{4}}", "{4}"),
        ]
        for (text, want) in cases { XCTAssertEqual(boxedMath.extract(from: text), want, text) }
    }

    func testLastNumberExtraction() {
        let rule = AnswerRule(extract: .lastNumber, compare: .math)
        let cases: [(String, String?)] = [
            ("3 apples, then 42.", "42"),
            ("It is -7.5 degrees", "-7.5"),
            ("no digits at all", nil),
            ("1,234,567 people", "1234567"),
            ("pick from the range 3-5", "5"),
            ("Answer: 3/4", "3/4"),
            ("the pair 1,2", "2"),
            ("x−3 and then −12", "-12"),
            ("version2 of 10", "10"),
        ]
        for (text, want) in cases { XCTAssertEqual(rule.extract(from: text), want, text) }
    }

    func testRegexExtraction() {
        let gsm = AnswerRule(extract: .regex, compare: .math, pattern: #"#### (\-?[0-9\.\,]+)"#)
        XCTAssertEqual(gsm.extract(from: "She pays 3 * 4 = 12.\n#### 1,234"), "1,234")
        XCTAssertTrue(gsm.grade(reply: "so\n#### 1,234", reference: "Natalia...\n#### 1234").correct)
        XCTAssertNil(gsm.extract(from: "no marker"))
        let whole = AnswerRule(extract: .regex, compare: .exact, pattern: "[A-D]\\b")
        XCTAssertEqual(whole.extract(from: "I think B, no wait, C is right"), "C")  // no group: the whole last match
        XCTAssertNil(gsm.problem)
        XCTAssertNotNil(AnswerRule(extract: .regex, pattern: "(unclosed").problem)
        XCTAssertNotNil(AnswerRule(extract: .regex).problem)
        XCTAssertNotNil(AnswerRule(extract: .boxed, pattern: "x").problem)
    }

    func testMathComparison() {
        let cases: [(String, String, Bool)] = [
            ("\\frac{3}{4}", "0.75", true),
            ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}", true),
            ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", true),
            ("1,000", "1000", true),
            ("1,2", "12", false),
            ("\\dfrac{1}{2}", "0.5", true),
            ("\\tfrac12", "1/2", true),
            ("\\frac{-2}{3}", "-\\frac23", true),
            ("2.50", "5/2", true),
            (".5", "\\frac{1}{2}", true),
            ("0.3333", "\\frac13", false),
            ("50\\%", "50", true),
            ("50\\%", "0.5", false),                  // percent signs are dropped, not divided by 100
            ("12 \\text{ cm}", "12", true),
            ("\\$18.00", "18", true),
            ("90^\\circ", "90", true),
            ("x = 5", "5", true),
            ("y=2x+1", "2x+1", true),
            ("\\left( 1, 2 \\right)", "(1,2)", true),
            ("{4}", "4", true),
            ("−3", "-3", true),
            ("7", "8", false),
            ("\\frac{1}{0}", "1", false),
            ("99999999999999999999999", "1", false),  // too large for an exact fraction: compared as text
            ("-\\frac{-576460752303423488}{0.0625}", "1", false),  // -Int.min: no fraction (and no trap)
            ("--5", "5", false),
            (".5,000", "0.5", false),
        ]
        for (a, b, want) in cases {
            XCTAssertEqual(boxedMath.matches(a, b), want, "\(a) vs \(b)")
            XCTAssertEqual(boxedMath.matches(b, a), want, "\(b) vs \(a) (symmetric)")
        }
    }

    func testExactComparison() {
        let exact = AnswerRule(extract: .whole, compare: .exact)
        XCTAssertTrue(exact.matches("  Paris ", "Paris"))
        XCTAssertFalse(exact.matches("Paris.", "Paris"))
        XCTAssertFalse(AnswerRule(extract: .boxed, compare: .exact).matches("\\frac{3}{4}", "0.75"))
    }

    func testGradingAReplyAgainstANuminaMathSolution() {
        let reference = "We have $2 \\cdot 1 = 2$, so the answer is $\\boxed{2}$."
        XCTAssertEqual(boxedMath.grade(reply: "Thus $\\boxed{2.0}$.", reference: reference),
                       GradedAnswer(answer: "2.0", expected: "2", correct: true))
        XCTAssertEqual(boxedMath.grade(reply: "Thus $\\boxed{3}$.", reference: reference).correct, false)
        // no final channel (generation stopped in the analysis), or no box in it: wrong, not an error
        XCTAssertEqual(boxedMath.grade(reply: nil, reference: reference), GradedAnswer(answer: nil, expected: "2", correct: false))
        XCTAssertEqual(boxedMath.grade(reply: "I think 2", reference: reference).answer, nil)
        // a reference without a box is taken whole
        XCTAssertEqual(boxedMath.grade(reply: "\\boxed{17}", reference: " 17\n").correct, true)
    }
}
